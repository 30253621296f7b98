// Computes reference CIDs with the npm `ipfs-unixfs-importer` (a real IPFS implementation,
// the one Helia uses; its unixfs-v0-2015 profile reproduces `ipfs add` defaults).
// Input: a JSON file (argv[2]) with [{ "path": "...", "dir": bool, "options": {...} }, ...].
// options: { "profile": "unixfs-v0-2015" | "unixfs-v1-2025" } or
//          { "cidVersion": 0|1, "rawLeaves": bool, "chunkSize": N, "maxLinks": N };
//          either may add "hamtThreshold": N (shardSplitThresholdBytes). With a profile,
//          cidVersion, rawLeaves, chunkSize and maxLinks (each optional) override it, as the
//          importer merges them.
// Output (stdout): a JSON array of root CID strings, one per case, in order.
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import * as fs from 'node:fs'
import * as path from 'node:path'

const blackhole = { put: async (cid) => cid }

function importerOptions (o) {
  const shard = o.hamtThreshold != null ? { shardSplitThresholdBytes: o.hamtThreshold } : {}
  if (o.profile != null) {
    const overrides = {}
    if (o.cidVersion != null) overrides.cidVersion = o.cidVersion
    if (o.rawLeaves != null) overrides.rawLeaves = o.rawLeaves
    if (o.chunkSize != null) overrides.chunker = fixedSize({ chunkSize: o.chunkSize })
    if (o.maxLinks != null) overrides.layout = balanced({ maxChildrenPerNode: o.maxLinks })
    return { profile: o.profile, ...shard, ...overrides }
  }
  return {
    ...shard,
    cidVersion: o.cidVersion,
    rawLeaves: o.rawLeaves,
    leafType: 'file',
    reduceSingleLeafToSelf: true,
    shardSplitStrategy: 'links-bytes',
    chunker: fixedSize({ chunkSize: o.chunkSize ?? 262144 }),
    layout: balanced({ maxChildrenPerNode: o.maxLinks ?? 174 })
  }
}

function * walk (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(abs) }
  } else if (st.isDirectory()) {
    yield { path: rel }
    const names = fs.readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    for (const n of names) yield * walk(path.join(abs, n), rel + '/' + n)
  } else {
    yield { path: rel, content: fs.createReadStream(abs, { highWaterMark: 1 << 20 }) }
  }
}

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const out = []
for (const c of cases) {
  const source = c.dir
    ? walk(c.path, path.basename(c.path))
    : [{ content: fs.createReadStream(c.path, { highWaterMark: 1 << 20 }) }]
  let last
  for await (const entry of importer(source, blackhole, importerOptions(c.options))) last = entry
  out.push(last.cid.toString())
}
process.stdout.write(JSON.stringify(out) + '\n')
