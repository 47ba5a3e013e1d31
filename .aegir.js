/** @type {import('aegir').PartialOptions} */
export default {
  build: {
    bundle: false
  },
  test: {
    build: false,
    timeout: 120000
  },
  lint: {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bin/**/*.js', 'bench/**/*.ts', 'scripts/**/*.ts', 'scripts/**/*.js']
  },
  dependencyCheck: {
    ignore: ['node', '@tensorflow/tfjs-node-gpu']
  }
}
