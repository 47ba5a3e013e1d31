/**
 * The blyd dashboard page: follows GET /v1/dashboard/events (server-sent
 * events read through fetch, so the bearer key can go in a header) and
 * renders each `snapshot` event, section by section. A section with a
 * renderer in SECTIONS gets it; any other key of the snapshot (one a later
 * daemon adds) is rendered as a generic table under its name, so a new
 * section needs no change here. Everything shown is set as text
 * (textContent, attributes): peer ids, model names and reasons are data,
 * never markup. A 401 shows the key form; the key is kept for this tab only
 * (sessionStorage). A lost stream is retried with a growing delay.
 */

const KEY_STORAGE = 'blyd.dashboard.key'
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 15000
/** nesting shown by the generic renderer; deeper values are shown as JSON */
const GENERIC_DEPTH = 3
/** a block id, key or hash: shown shortened by the generic renderer */
const HEX_ID = /^[0-9a-f]{40,}$/

// snapshots are JSON whose sections may grow fields: the renderers read them untyped
/* eslint-disable jsdoc/reject-any-type */
/**
 * @typedef {Record<string, any>} Json
 * @typedef {{ title: string, render: (value: any, snapshot: Json) => Array<Node | string> }} SectionView
 */
/* eslint-enable jsdoc/reject-any-type */

/**
 * An element with attributes and children (strings become text nodes).
 *
 * @param {string} tag
 * @param {Record<string, string | number | boolean | null | undefined>} [attrs]
 * @param {Array<Node | string | number | null | undefined>} [children]
 * @returns {HTMLElement}
 */
function el (tag, attrs = {}, children = []) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null && value !== false) {
      node.setAttribute(name, String(value))
    }
  }
  for (const child of children) {
    if (child != null) {
      node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child)
    }
  }
  return node
}

/**
 * A hex id shortened to its first characters, the whole id in its title.
 *
 * @param {unknown} id
 * @param {number} [chars]
 */
function short (id, chars = 12) {
  const text = String(id ?? '')
  return el('code', { title: text }, [text.length > chars + 1 ? `${text.slice(0, chars)}…` : text])
}

/**
 * A small label; `kind` is its style class.
 *
 * @param {string} text
 * @param {string} [kind]
 */
function badge (text, kind = text) {
  return el('span', { class: `badge ${kind}` }, [text])
}

/**
 * A number as text (whole numbers without decimals), '–' when it is none.
 *
 * @param {unknown} n
 * @param {number} [digits]
 */
function num (n, digits = 1) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toFixed(Number.isInteger(n) ? 0 : digits) : '–'
}

/** @param {number} ms */
function duration (ms) {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) {
    return `${s} s`
  }
  if (s < 7200) {
    return `${Math.round(s / 60)} min`
  }
  return `${(s / 3600).toFixed(1)} h`
}

/**
 * A table: header cells, then rows of cells.
 *
 * @param {string[]} head
 * @param {Array<{ cells: Array<Node | string | number | null | undefined>, attrs?: Record<string, string | null | undefined> }>} rows
 */
function table (head, rows) {
  return el('table', {}, [
    el('thead', {}, [el('tr', {}, head.map(h => el('th', {}, [h])))]),
    el('tbody', {}, rows.map(r => el('tr', r.attrs ?? {}, r.cells.map(c => el('td', {}, [c])))))
  ])
}

const SVG_NS = 'http://www.w3.org/2000/svg'

/** @type {Record<string, string>} a training job's state -> its badge style */
const JOB_STATE_STYLE = { done: 'accepted', failed: 'error' }

/**
 * A loss curve as an inline SVG line (train loss per step; eval losses as
 * dots), scaled to its own range; the points are numbers, never markup.
 *
 * @param {Json} job
 */
function lossCurve (job) {
  const width = 320
  const height = 90
  const pad = 4
  /** @type {Array<[number, number]>} */
  const train = (Array.isArray(job.losses) ? job.losses : []).map((/** @type {unknown} */ l, /** @type {number} */ i) => [(i + 1) * Number(job.lossStride ?? 1), Number(l)])
  /** @type {Array<[number, number]>} */
  const evals = (Array.isArray(job.evalLosses) ? job.evalLosses : []).map((/** @type {Json} */ e) => [Number(e.step), Number(e.loss)])
  const points = [...train, ...evals].filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
  const svg = document.createElementNS(SVG_NS, 'svg')
  svg.setAttribute('class', 'loss-curve')
  svg.setAttribute('width', String(width))
  svg.setAttribute('height', String(height))
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`)
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', `loss curve of job ${String(job.id)}`)
  if (points.length === 0) {
    return svg
  }
  const maxX = Math.max(1, Number(job.steps) || 0, ...points.map(p => p[0]))
  const ys = points.map(p => p[1])
  const minY = Math.min(...ys)
  const spanY = Math.max(1e-9, Math.max(...ys) - minY)
  /** @param {[number, number]} p */
  const at = (p) => [pad + (width - 2 * pad) * p[0] / maxX, height - pad - (height - 2 * pad) * (p[1] - minY) / spanY]
  const line = document.createElementNS(SVG_NS, 'polyline')
  line.setAttribute('class', 'train')
  line.setAttribute('fill', 'none')
  line.setAttribute('points', train.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(p => at(p).map(v => v.toFixed(1)).join(',')).join(' '))
  svg.append(line)
  for (const e of evals) {
    const [cx, cy] = at(e)
    const dot = document.createElementNS(SVG_NS, 'circle')
    dot.setAttribute('class', 'eval')
    dot.setAttribute('cx', cx.toFixed(1))
    dot.setAttribute('cy', cy.toFixed(1))
    dot.setAttribute('r', '3')
    svg.append(dot)
  }
  return svg
}

/**
 * A two-column table of name -> value.
 *
 * @param {Array<[string, Node | string | number | null | undefined]>} pairs
 */
function pairs (pairs) {
  return el('table', {}, pairs.map(([k, v]) => el('tr', {}, [el('th', {}, [k]), el('td', {}, [v])])))
}

/**
 * Any JSON value: primitives as text, arrays of objects as a table, objects as name/value rows.
 *
 * @param {unknown} value
 * @param {number} [depth]
 * @returns {Node | string}
 */
function generic (value, depth = 0) {
  if (typeof value === 'string' && HEX_ID.test(value)) {
    return short(value, 16)
  }
  if (value == null || typeof value !== 'object') {
    return value == null ? '–' : String(value)
  }
  if (depth >= GENERIC_DEPTH) {
    return el('code', {}, [JSON.stringify(value)])
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return el('span', { class: 'muted' }, ['none'])
    }
    if (value.every(v => v != null && typeof v === 'object' && !Array.isArray(v))) {
      const keys = [...new Set(value.flatMap(v => Object.keys(v)))]
      return table(keys, value.map(v => ({ cells: keys.map(k => generic(v[k], depth + 1)) })))
    }
    return el('span', {}, value.flatMap((v, i) => [i > 0 ? ', ' : null, typeof v === 'object' ? JSON.stringify(v) : generic(v, depth + 1)]))
  }
  const entries = Object.entries(value)
  return entries.length === 0 ? el('span', { class: 'muted' }, ['none']) : pairs(entries.map(([k, v]) => [k, generic(v, depth + 1)]))
}

/**
 * The name of a model (from the snapshot's models), else its short id.
 *
 * @param {Json} snapshot
 * @param {string} id
 */
function modelLabel (snapshot, id) {
  const model = (snapshot.models ?? []).find((/** @type {Json} */ m) => m.id === id)
  return el('span', {}, model != null ? [String(model.name), ' ', short(id, 8)] : [short(id)])
}

/** @type {Record<string, SectionView>} */
const SECTIONS = {
  node: {
    title: 'This node',
    render: (node, snapshot) => {
      const s = node.serving
      const rows = /** @type {Array<[string, Node | string | number | null | undefined]>} */ ([
        ['peer id', el('code', { 'data-field': 'peer-id' }, [String(node.peerId)])],
        ['blyd', String(node.version)],
        ['backend', String(node.backend)],
        ['up', duration(snapshot.at - node.startedAt)],
        ['connections', node.connections],
        ['addresses', el('span', {}, (node.addrs ?? []).map((/** @type {string} */ a) => el('div', {}, [el('code', {}, [a])])))]
      ])
      if (s == null) {
        rows.push(['span', el('span', { class: 'muted' }, ['serves no layers'])])
      } else {
        rows.push(
          ['model', modelLabel(snapshot, s.model)],
          ['span', el('span', {}, [s.start != null ? `layers ${s.start}–${s.end} ` : `${s.layers} `, badge(String(s.state))])],
          ['weights version', s.version != null ? short(s.version) : '–'],
          ['sessions', `${num(s.sessions)} / ${num(s.maxSessions)} (busy answers ${num(s.busy)})`]
        )
        if (s.detail != null) {
          rows.push(['detail', String(s.detail)])
        }
      }
      return [pairs(rows)]
    }
  },
  swarm: {
    title: 'Peers and spans',
    render: (swarm, snapshot) => {
      /** @type {Array<Node | string>} */
      const out = []
      const self = snapshot.node?.peerId
      for (const model of swarm.models ?? []) {
        const spans = (swarm.spans ?? []).filter((/** @type {Json} */ s) => s.model === model).sort((/** @type {Json} */ a, /** @type {Json} */ b) => a.start - b.start || String(a.peerId).localeCompare(String(b.peerId)))
        const fastest = Math.max(1, ...spans.map((/** @type {Json} */ s) => Number(s.tokensPerSecond) || 0))
        out.push(el('h3', {}, ['model ', modelLabel(snapshot, model)]))
        if (spans.length === 0) {
          out.push(el('p', { class: 'muted' }, ['no live span']))
          continue
        }
        out.push(table(['peer', 'layers', 'backend', 'tokens/s', 'free sessions', 'queue', 'rtt', 'seen', 'version'], spans.map((/** @type {Json} */ s) => {
          const bar = el('span', { class: 'bar' })
          bar.style.width = `${Math.round(40 * (Number(s.tokensPerSecond) || 0) / fastest)}px`
          return {
            attrs: { 'data-peer': String(s.peerId), 'data-model': String(model), class: s.peerId === self ? 'self' : null },
            cells: [short(s.peerId, 16), `${s.start}–${s.end}`, String(s.backend), el('span', {}, [bar, num(s.tokensPerSecond)]), num(s.freeSessions), num(s.queueLength), s.rttMs == null ? '–' : `${num(s.rttMs)} ms`, badge(String(s.source)), s.version != null ? short(s.version, 8) : '–']
          }
        })))
      }
      const connected = swarm.connected ?? []
      out.push(el('h3', {}, [`connected peers (${connected.length})`]))
      out.push(connected.length === 0
        ? el('p', { class: 'muted' }, ['none'])
        : table(['peer', 'addresses', 'spans'], connected.map((/** @type {Json} */ c) => ({
          attrs: { 'data-connected': String(c.peerId) },
          cells: [short(c.peerId, 16), el('span', {}, (c.addrs ?? []).map((/** @type {string} */ a) => el('div', {}, [el('code', {}, [a])]))), num((swarm.spans ?? []).filter((/** @type {Json} */ s) => s.peerId === c.peerId).length)]
        }))))
      return out
    }
  },
  models: {
    title: 'Models on chain',
    render: (models) => [table(['model', 'name', 'units stored', 'live version'], models.map((/** @type {Json} */ m) => ({
      attrs: { 'data-model': String(m.id) },
      cells: [short(m.id), String(m.name), `${m.unitsStored} / ${m.units}${m.complete === true ? '' : ' (incomplete)'}`, m.version != null ? short(m.version) : '–']
    })))]
  },
  chain: {
    title: 'Chains',
    render: (chain) => [
      table(['chain', 'blocks', 'tips'], ['A', 'B'].map(name => ({
        attrs: { 'data-chain': name },
        cells: [name, num(chain.counts?.[name]), el('span', {}, (chain.tips?.[name] ?? []).map((/** @type {string} */ t) => el('div', {}, [short(t, 16)])))]
      }))),
      el('p', { class: 'muted' }, [`${num(chain.counts?.total)} blocks in all, ${num(chain.counts?.orphans)} orphans waiting for parents`])
    ]
  },
  proposals: {
    title: 'Proposals',
    render: (proposals, snapshot) => proposals.length === 0
      ? [el('p', { class: 'muted' }, ['no proposals'])]
      : [table(['proposal', 'model', 'status', 'accepts / rejects / quorum', 'gain', 'attestations'], proposals.map((/** @type {Json} */ p) => ({
          attrs: { 'data-proposal': String(p.id) },
          cells: [
            short(p.id),
            modelLabel(snapshot, p.model),
            el('span', {}, [badge(String(p.status)), ' ', String(p.reason ?? '')]),
            `${num(p.accepts)} / ${num(p.rejects)} / ${num(p.quorum)}`,
            p.gain == null ? '–' : `${(100 * p.gain).toFixed(2)} %`,
            (p.attestations ?? []).length === 0
              ? el('span', { class: 'muted' }, ['none'])
              : table(['validator', 'verdict', 'reason', 'counted'], p.attestations.map((/** @type {Json} */ a) => ({
                cells: [short(a.validator, 8), badge(String(a.verdict), a.verdict === 'accept' ? 'accepted' : 'rejected'), String(a.reason ?? ''), a.counted === true ? 'yes' : `no (${String(a.ignored ?? '')})`]
              })))
          ]
        })))]
  },
  validators: {
    title: 'Validators',
    render: (sets, snapshot) => sets.flatMap((/** @type {Json} */ v) => v.error != null
      ? [el('h3', {}, ['model ', modelLabel(snapshot, v.model)]), el('p', { class: 'error' }, [String(v.error)])]
      : [
          el('h3', {}, ['model ', modelLabel(snapshot, v.model), ` · quorum ${num(v.quorum)}`]),
          (v.validators ?? []).length === 0 ? el('p', { class: 'muted' }, ['no validators']) : table(['peer id', 'key'], v.validators.map((/** @type {Json} */ k) => ({ cells: [short(k.peerId, 16), short(k.key)] }))),
          ...(v.pending ?? []).length > 0 ? [el('h3', {}, ['pending motions']), generic(v.pending)] : []
        ])
  },
  learning: { title: 'Validator service', render: (learning) => [generic(learning.validator ?? learning)] },
  training: {
    title: 'Training jobs',
    render: (jobs) => jobs.length === 0
      ? [el('p', { class: 'muted' }, ['no training jobs on this node (blyd train)'])]
      : [table(['job', 'dataset', 'state', 'step', 'train loss', 'eval loss', 'tokens/s', 'proposal', 'loss curve'], jobs.map((/** @type {Json} */ j) => {
          const evals = Array.isArray(j.evalLosses) ? j.evalLosses : []
          const losses = Array.isArray(j.losses) ? j.losses : []
          return {
            attrs: { 'data-job': String(j.id) },
            cells: [
              String(j.id),
              String(j.dataset ?? ''),
              el('span', {}, [badge(String(j.state), JOB_STATE_STYLE[j.state] ?? 'pending'), ' ', String(j.error ?? '')]),
              `${num(j.step)} / ${num(j.steps)}`,
              losses.length > 0 ? num(losses[losses.length - 1], 4) : '–',
              evals.length > 0 ? `${num(evals[0].loss, 4)} → ${num(evals[evals.length - 1].loss, 4)}` : '–',
              num(j.tokensPerSecond),
              j.proposalId != null ? short(j.proposalId) : '–',
              lossCurve(j)
            ]
          }
        }))]
  },
  ledger: { title: 'Ledger and balances', render: (ledger) => [generic(ledger)] },
  balances: { title: 'Balances', render: (balances) => [generic(balances)] }
}

/** snapshot keys that are no section */
const META = new Set(['at', 'seq', 'errors'])

/**
 * Render one snapshot: each section present, in SECTIONS order then the
 * others; a section that failed this time keeps its last content under its error.
 *
 * @param {Json} snapshot
 */
export function render (snapshot) {
  const main = /** @type {HTMLElement} */ (document.getElementById('sections'))
  const errors = snapshot.errors ?? {}
  const keys = [...Object.keys(SECTIONS), ...Object.keys(snapshot), ...Object.keys(errors)]
  const names = [...new Set(keys)].filter(k => !META.has(k) && (snapshot[k] !== undefined || errors[k] != null))
  for (const [i, name] of names.entries()) {
    const view = Object.hasOwn(SECTIONS, name) ? SECTIONS[name] : { title: name, render: (/** @type {unknown} */ v) => [generic(v)] }
    let section = /** @type {HTMLElement | null} */ (main.querySelector(`section[data-section="${CSS.escape(name)}"]`))
    if (section == null) {
      section = el('section', { 'data-section': name })
    }
    if (main.children[i] !== section) {
      main.insertBefore(section, main.children[i] ?? null)
    }
    /** @type {Array<Node | string>} */
    let body
    if (snapshot[name] !== undefined) {
      try {
        body = view.render(snapshot[name], snapshot)
      } catch (err) {
        body = [el('p', { class: 'error' }, [`cannot show this section: ${err instanceof Error ? err.message : String(err)}`]), generic(snapshot[name])]
      }
    } else {
      body = [...(section.querySelector(':scope > .content')?.childNodes ?? [])]
    }
    const error = errors[name] != null ? el('p', { class: 'error' }, [`not updated: ${String(errors[name])}`]) : null
    section.replaceChildren(el('h2', {}, [view.title]), ...(error != null ? [error] : []), el('div', { class: 'content' }, body))
  }
  for (const section of [...main.querySelectorAll(':scope > section')]) {
    if (!names.includes(section.getAttribute('data-section') ?? '')) {
      section.remove()
    }
  }
  setStatus('live', `live · snapshot ${snapshot.seq} at ${new Date(snapshot.at).toLocaleTimeString()}`)
}

/**
 * The line under the title: live, connecting, the key asked for, or the error.
 *
 * @param {string} state
 * @param {string} text
 */
function setStatus (state, text) {
  const status = /** @type {HTMLElement} */ (document.getElementById('status'))
  status.dataset.state = state
  status.textContent = text
}

/** @returns {Record<string, string>} */
function authHeaders () {
  const key = sessionStorage.getItem(KEY_STORAGE)
  return key != null && key !== '' ? { authorization: `Bearer ${key}` } : {}
}

/**
 * Show the key form with the daemon's message.
 *
 * @param {string} message
 * @param {() => void} retry
 */
function askForKey (message, retry) {
  const form = /** @type {HTMLFormElement} */ (document.getElementById('auth'))
  const text = /** @type {HTMLElement} */ (document.getElementById('auth-message'))
  const input = /** @type {HTMLInputElement} */ (document.getElementById('auth-key'))
  text.textContent = `401 Unauthorized: ${message}. Enter the daemon's API key (httpApiKey) to see the dashboard.`
  form.hidden = false
  setStatus('auth', 'API key required')
  form.onsubmit = (event) => {
    event.preventDefault()
    sessionStorage.setItem(KEY_STORAGE, input.value)
    input.value = ''
    form.hidden = true
    retry()
  }
  input.focus()
}

/**
 * The error message of an answer in OpenAI's error shape, else its status text.
 *
 * @param {Response} res
 */
async function errorMessage (res) {
  try {
    const body = await res.json()
    return String(body?.error?.message ?? res.statusText)
  } catch {
    return res.statusText
  }
}

/**
 * Read server-sent events from a fetch body; calls onEvent for each complete event.
 *
 * @param {ReadableStream<Uint8Array>} body
 * @param {(event: { event: string, data: string, id: string | null }) => void} onEvent
 */
async function readEvents (body, onEvent) {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  while (true) {
    const { value, done } = await reader.read()
    if (done) {
      return
    }
    buffer += decoder.decode(value, { stream: true })
    let end
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '')
      let event = 'message'
      let id = null
      const data = []
      for (const line of block.split(/\r?\n/)) {
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'event') {
          event = text
        } else if (field === 'data') {
          data.push(text)
        } else if (field === 'id') {
          id = text
        }
      }
      if (data.length > 0) {
        onEvent({ event, data: data.join('\n'), id })
      }
    }
  }
}

/** Follow the event stream; reconnect after a failure, ask for the key on a 401. */
async function follow () {
  let delay = RETRY_MIN_MS
  while (true) {
    let failure
    try {
      const res = await fetch('/v1/dashboard/events', { headers: { accept: 'text/event-stream', ...authHeaders() }, cache: 'no-store' })
      if (res.status === 401) {
        const message = await errorMessage(res)
        await new Promise(resolve => { askForKey(message, () => { resolve(undefined) }) })
        delay = RETRY_MIN_MS
        continue
      }
      if (!res.ok || res.body == null) {
        throw new Error(`${res.status} ${await errorMessage(res)}`)
      }
      delay = RETRY_MIN_MS
      await readEvents(res.body, ({ event, data }) => {
        if (event === 'snapshot') {
          render(JSON.parse(data))
        } else if (event === 'message') {
          // the listener's last event when a stream fails: {"error": {...}}
          const error = JSON.parse(data)?.error
          if (error != null) {
            throw new Error(String(error.message))
          }
        }
      })
      failure = 'the daemon ended the stream'
    } catch (err) {
      failure = err instanceof Error ? err.message : String(err)
    }
    setStatus('error', `disconnected (${failure}); retrying in ${Math.round(delay / 1000)} s`)
    const wait = delay
    await new Promise(resolve => { setTimeout(resolve, wait) })
    delay = Math.min(RETRY_MAX_MS, delay * 2)
  }
}

follow().catch(err => { setStatus('error', `stopped: ${err instanceof Error ? err.message : String(err)}`) })
