import { mkdir, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { formatForPath, parseIdsDataset, parseTextDataset, readDatasetFile } from '../../src/learning/dataset-parse.ts'
import { MAX_DATASET_BYTES } from '../../src/protocols/dataset.ts'
import { removeDir, tempDir } from '../chain/helpers.ts'

const enc = new TextEncoder()

function bytes (...parts: Array<string | number[]>): Uint8Array {
  return Buffer.concat(parts.map(p => typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p)))
}

/** a JSONL line of 10 ids from `i` */
function tenIds (i: number): string {
  return JSON.stringify({ ids: Array.from({ length: 10 }, (_, j) => (i + j) % 512) })
}

/** the DatasetError `fn` throws (sync or async) */
async function datasetError (fn: () => unknown): Promise<Error & { code: string, line?: number }> {
  try {
    await fn()
  } catch (err: any) {
    expect(err.name, err.message).to.equal('DatasetError')
    return err
  }
  throw new Error('expected a DatasetError')
}

describe('learning/dataset-parse', () => {
  it('format from the extension: .jsonl is ids, anything else text', () => {
    expect(formatForPath('/x/a.jsonl')).to.equal('ids')
    expect(formatForPath('/x/a.JSONL')).to.equal('ids')
    expect(formatForPath('/x/a.json')).to.equal('text')
    expect(formatForPath('/x/a.txt')).to.equal('text')
    expect(formatForPath('/x/corpus')).to.equal('text')
  })

  describe('text', () => {
    it('accepts valid UTF-8 as is (multi-byte characters, a BOM kept as U+FEFF)', () => {
      expect(parseTextDataset(bytes('héllo wörld ✓ 𝄞\n'))).to.equal('héllo wörld ✓ 𝄞\n')
      expect(parseTextDataset(bytes([0xef, 0xbb, 0xbf], 'x'))).to.equal('\ufeffx')
    })

    it('refuses invalid UTF-8, naming the first bad line', async () => {
      const cases: Array<[string, number[]]> = [
        ['a lone continuation byte', [0x80]],
        ['an overlong "/"', [0xc0, 0xaf]],
        ['a surrogate', [0xed, 0xa0, 0x80]],
        ['a code point past U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
        ['a truncated sequence', [0xe2, 0x82]],
        ['0xff', [0xff]]
      ]
      for (const [what, bad] of cases) {
        const err = await datasetError(() => parseTextDataset(bytes('line one\nline two\nthree ', bad, ' end\nfour\n')))
        expect(err.code, what).to.equal('ERR_DATASET_UTF8')
        expect(err.line, what).to.equal(3)
        expect(err.message).to.equal('line 3 is not valid UTF-8 (the line starts at byte 18)')
      }
      const atEnd = await datasetError(() => parseTextDataset(bytes('ok\n', [0xe2, 0x82])))
      expect(atEnd.line).to.equal(2)
    })

    it('refuses an empty file and one over MAX_DATASET_BYTES', async () => {
      expect((await datasetError(() => parseTextDataset(new Uint8Array(0)))).code).to.equal('ERR_DATASET_EMPTY')
      expect((await datasetError(() => parseTextDataset(new Uint8Array(MAX_DATASET_BYTES + 1)))).code).to.equal('ERR_DATASET_TOO_LARGE')
    })
  })

  describe('ids (JSONL)', () => {
    it('one sequence per non-empty line; blank lines, CRLF, a BOM and other keys are fine', () => {
      const s = parseIdsDataset(bytes([0xef, 0xbb, 0xbf], '{"ids":[1,2,3]}\r\n\n   \n{"ids": [4, 511], "source": "x"}\n{"ids":[0,0]}'), 512)
      expect(Array.from(s.tokens)).to.deep.equal([1, 2, 3, 4, 511, 0, 0])
      expect(Array.from(s.offsets)).to.deep.equal([0, 3, 5, 7])
      const many = parseIdsDataset(enc.encode(Array.from({ length: 300 }, (_, i) => tenIds(i)).join('\n')), 512)
      expect(many.tokens.length).to.equal(3000)
      expect(many.offsets.length).to.equal(301)
    })

    it('each bad line is named with what is wrong', async () => {
      const cases: Array<[string, string, RegExp]> = [
        ['{"ids":[1,2,3', 'ERR_DATASET_JSON', /^line 2 is not valid JSON/],
        ['[1,2,3]', 'ERR_DATASET_JSON', /^line 2 is not an object with an "ids" array \(got \[1,2,3\]\)/],
        ['{"tokens":[1,2]}', 'ERR_DATASET_JSON', /^line 2 is not an object with an "ids" array/],
        ['{"ids":"1 2"}', 'ERR_DATASET_JSON', /^line 2 is not an object with an "ids" array/],
        ['null', 'ERR_DATASET_JSON', /^line 2 is not an object/],
        ['{"ids":[1,2.5]}', 'ERR_DATASET_ID', /^line 2: ids\[1\] = 2.5 is not an integer$/],
        ['{"ids":[1,"2"]}', 'ERR_DATASET_ID', /^line 2: ids\[1\] = "2" is not an integer$/],
        ['{"ids":[null,2]}', 'ERR_DATASET_ID', /^line 2: ids\[0\] = null is not an integer$/],
        ['{"ids":[1,-1]}', 'ERR_DATASET_ID', /^line 2: ids\[1\] = -1 is out of range \[0, 512\) of the model$/],
        ['{"ids":[1,512]}', 'ERR_DATASET_ID', /^line 2: ids\[1\] = 512 is out of range \[0, 512\)/],
        ['{"ids":[1e9,2]}', 'ERR_DATASET_ID', /^line 2: ids\[0\] = 1000000000 is out of range/],
        ['{"ids":[7]}', 'ERR_DATASET_SHORT_SEQUENCE', /^line 2 has 1 id; a sequence needs at least 2$/],
        ['{"ids":[]}', 'ERR_DATASET_SHORT_SEQUENCE', /^line 2 has 0 ids; a sequence needs at least 2$/]
      ]
      for (const [line, code, message] of cases) {
        const err = await datasetError(() => parseIdsDataset(enc.encode(`{"ids":[1,2]}\n${line}\n{"ids":[3,4]}\n`), 512))
        expect(err.code, line).to.equal(code)
        expect(err.message, line).to.match(message)
        expect(err.line).to.equal(2)
      }
    })

    it('refuses invalid UTF-8 on a line, an empty file and a file of blank lines', async () => {
      const utf8 = await datasetError(() => parseIdsDataset(bytes('{"ids":[1,2]}\n{"ids":[1,2]} ', [0xc3], '\n'), 512))
      expect(utf8.code).to.equal('ERR_DATASET_UTF8')
      expect(utf8.message).to.equal('line 2 is not valid UTF-8')
      expect((await datasetError(() => parseIdsDataset(new Uint8Array(0), 512))).code).to.equal('ERR_DATASET_EMPTY')
      const blank = await datasetError(() => parseIdsDataset(enc.encode('\n  \n\r\n'), 512))
      expect(blank.code).to.equal('ERR_DATASET_EMPTY')
      expect(blank.message).to.match(/no sequence/)
    })
  })

  describe('readDatasetFile', () => {
    let dir: string

    before(async () => { dir = await tempDir('blyd-parse-') })
    after(async () => { await removeDir(dir) })

    it('reads a file whole', async () => {
      await writeFile(join(dir, 'a.txt'), 'hello')
      expect(Buffer.from(await readDatasetFile(join(dir, 'a.txt'))).toString()).to.equal('hello')
    })

    it('refuses a file over the limit before reading it (a sparse 256 MiB + 1 file)', async () => {
      const path = join(dir, 'big.txt')
      await writeFile(path, '')
      await truncate(path, MAX_DATASET_BYTES + 1)
      const err = await datasetError(async () => readDatasetFile(path))
      expect(err.code).to.equal('ERR_DATASET_TOO_LARGE')
      expect(err.message).to.match(/is 268435457 bytes, over the dataset limit of 268435456/)
      await writeFile(join(dir, 'eleven'), 'x'.repeat(11))
      expect((await datasetError(async () => readDatasetFile(join(dir, 'eleven'), 10))).code).to.equal('ERR_DATASET_TOO_LARGE')
      expect((await readDatasetFile(join(dir, 'eleven'), 11)).length).to.equal(11)
    })

    it('refuses a missing file and a directory', async () => {
      const missing = await datasetError(async () => readDatasetFile(join(dir, 'nope.txt')))
      expect(missing.code).to.equal('ERR_DATASET_FILE')
      expect(missing.message).to.match(/ENOENT/)
      await mkdir(join(dir, 'sub'))
      expect((await datasetError(async () => readDatasetFile(join(dir, 'sub')))).code).to.equal('ERR_DATASET_FILE')
    })
  })
})
