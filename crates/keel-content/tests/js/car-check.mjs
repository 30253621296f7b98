// Reads a CAR with the npm reference reader `@ipld/car` and verifies every block's sha2-256
// digest against its CID with `multiformats`. Usage: node car-check.mjs FILE.car
// Prints {"roots": [...], "blocks": [...CIDs in order], "verified": n}; exits 1 on a mismatch.
import { readFile } from 'node:fs/promises'
import { CarReader } from '@ipld/car'
import { sha256 } from 'multiformats/hashes/sha2'
import { equals } from 'multiformats/bytes'

const reader = await CarReader.fromBytes(await readFile(process.argv[2]))
const out = { roots: (await reader.getRoots()).map(String), blocks: [], verified: 0 }
for await (const { cid, bytes } of reader.blocks()) {
  if (cid.multihash.code !== sha256.code) throw new Error(`${cid}: not sha2-256`)
  const digest = await sha256.digest(bytes)
  if (!equals(digest.bytes, cid.multihash.bytes)) {
    console.error(`${cid}: bytes do not match`)
    process.exit(1)
  }
  out.blocks.push(cid.toString())
  out.verified++
}
console.log(JSON.stringify(out))
