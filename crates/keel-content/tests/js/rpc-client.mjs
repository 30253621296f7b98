// Drives keel's Kubo RPC subset with the real npm `kubo-rpc-client`, and computes the expected
// CIDs with npm `ipfs-unixfs-importer`. Usage: node rpc-client.mjs URL [TOKEN]
// Prints one JSON object of observations; the Rust test asserts on it.
import { create } from 'kubo-rpc-client'
import { importer } from 'ipfs-unixfs-importer'

const [url, token] = process.argv.slice(2)
const client = create({ url, headers: token ? { authorization: `Bearer ${token}` } : {} })
const enc = (s) => new TextEncoder().encode(s)
const blackhole = { put: async (cid) => cid }
async function ref (source, options) {
  let last
  for await (const e of importer(source, blackhole, options)) last = e
  return last.cid.toString()
}
async function collect (it) { const out = []; for await (const x of it) out.push(x); return out }
const concat = (chunks) => Buffer.concat(chunks.map((c) => Buffer.from(c)))

const out = {}
const bytes = new Uint8Array(1_000_000).map((_, i) => (i * 7919 + (i >> 9)) % 251)

const added = await client.add(bytes)
out.add = added.cid.toString()
out.addRef = await ref([{ content: [bytes] }], { profile: 'unixfs-v0-2015' })
out.addSize = Number(added.size)

const addedV1 = await client.add(bytes, { cidVersion: 1 })
out.addV1 = addedV1.cid.toString()
out.addV1Ref = await ref([{ content: [bytes] }], { cidVersion: 1, rawLeaves: true, profile: undefined })

out.catEqual = Buffer.compare(concat(await collect(client.cat(added.cid))), Buffer.from(bytes)) === 0
out.catRange = Buffer.compare(concat(await collect(client.cat(added.cid, { offset: 262140, length: 10 }))), Buffer.from(bytes.slice(262140, 262150))) === 0

const dirInput = () => [
  { path: 'dir/a.txt', content: enc('hello world\n') },
  { path: 'dir/sub/b.txt', content: enc('b') },
  { path: 'dir/empty' }
]
const entries = await collect(client.addAll(dirInput()))
out.dirEntries = entries.map((e) => e.path)
out.dir = entries[entries.length - 1].cid.toString()
out.dirRef = await ref(dirInput(), { profile: 'unixfs-v0-2015' })

out.ls = (await collect(client.ls(out.dir))).map((e) => `${e.name}:${e.type}:${e.size}`)

await client.pin.rm(added.cid)
out.pinnedAfterRm = (await collect(client.pin.ls())).map((p) => p.cid.toString()).includes(out.add)
await client.pin.add(added.cid)
out.pinnedAfterAdd = (await collect(client.pin.ls({ type: 'recursive' }))).map((p) => p.cid.toString()).includes(out.add)
try {
  await client.pin.add('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  out.pinMissing = 'accepted'
} catch (e) {
  out.pinMissing = e.message
}

const bcid = await client.block.put(enc('block data'))
out.blockPut = bcid.toString()
out.blockGet = new TextDecoder().decode(await client.block.get(bcid))
out.blockStat = (await client.block.stat(bcid)).size

const car = concat(await collect(client.dag.export(out.dir)))
out.carBytes = car.length
out.dagImport = (await collect(client.dag.import([car]))).map((r) => r.root.cid.toString())

const tar = concat(await collect(client.get(out.dir)))
out.getTar = tar.length % 512 === 0 && tar.includes(Buffer.from(`${out.dir}/sub/b.txt`)) && tar.includes(Buffer.from('hello world\n'))

const repo = await client.repo.stat()
out.repoObjects = Number(repo.numObjects)
out.version = (await client.version()).version
out.id = (await client.id()).id.toString()

// GC: the CIDv1 copy is unpinned, the block above was never pinned; both go, the rest stays.
await client.pin.rm(addedV1.cid)
const gc = await collect(client.repo.gc())
out.gc = gc.map((r) => r.cid.toString())
out.gcErrors = gc.filter((r) => r.err).map((r) => r.err.message)
try {
  await collect(client.cat(addedV1.cid))
  out.catAfterGc = 'served'
} catch (e) {
  out.catAfterGc = e.message
}
out.catPinnedAfterGc = Buffer.compare(concat(await collect(client.cat(added.cid))), Buffer.from(bytes)) === 0
out.lsAfterGc = (await collect(client.ls(out.dir))).length

try {
  await collect(client.cat('QmNotACid'))
  out.badCat = 'accepted'
} catch (e) {
  out.badCat = e.message
}
process.stdout.write(JSON.stringify(out) + '\n')
