#!/usr/bin/env python3
"""Benchmark harness for TNO's MPC reference implementation (the peer caucus is compared with).

Run with the venv made by setup.sh:

    bench/peers/tno/.venv/bin/python bench/peers/tno/run.py [all|keygen|decrypt|comm] [options]

Prints one JSON object on stdout ({"peer": "tno", "versions", "machine", "params", "figures"})
and human-readable progress on stderr. Every measured unit (one keygen run, one decryption
batch, one communication session) runs in a child process with a hard time limit
(--timeout-s), so the script never hangs; all sockets are on 127.0.0.1.
See README.md beside this file for what every figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

TNO_PACKAGES = [
    "tno.mpc.protocols.distributed_keygen",
    "tno.mpc.communication",
    "tno.mpc.encryption_schemes.paillier",
    "tno.mpc.encryption_schemes.shamir",
    "tno.mpc.encryption_schemes.templates",
    "tno.mpc.encryption_schemes.utils",
    "gmpy2",
    "sympy",
    "aiohttp",
    "ormsgpack",
]

PARTY_NAMES = ["party0", "party1", "party2"]


# ----------------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[tno-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_ports(n: int) -> list[int]:
    """n distinct currently-free TCP ports on 127.0.0.1 (the kernel picks them)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    xs = sorted(values)
    k = max(1, int(-(-p * len(xs) // 100)))  # ceil(p/100 * n), at least 1
    return xs[min(k, len(xs)) - 1]


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"runs": 0, "min": None, "median": None, "max": None}
    return {
        "runs": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def rnd(x: Any, nd: int = 4) -> Any:
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: rnd(v, nd) for k, v in x.items()}
    if isinstance(x, list):
        return [rnd(v, nd) for v in x]
    return x


def figure(name: str, unit: str, values: list[float], extra: dict[str, Any] | None = None,
           nd: int = 4) -> dict[str, Any]:
    f: dict[str, Any] = {"name": name, "unit": unit}
    f.update(stats(values))
    f["extra"] = extra or {}
    return rnd(f, nd)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        info["cores_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu_model"] = platform.processor() or None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    try:
        import ssl

        info["openssl"] = ssl.OPENSSL_VERSION
    except ImportError:
        pass
    try:
        import gmpy2

        info["gmp"] = gmpy2.mp_version()
    except ImportError:
        pass
    return info


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in TNO_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def quiet_tno() -> None:
    """Keep TNO's loggers and warnings off stderr (they are chatty: key length < 1024 etc.)."""
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("tno", "aiohttp", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def arm_watchdog(seconds: float) -> None:
    """Backstop inside a child: exit hard if it outlives its own limit."""

    def _expired(_signum: int, _frame: Any) -> None:
        print(json.dumps({"error": f"watchdog: child exceeded {seconds:.0f} s"}), flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, _expired)
    signal.alarm(max(1, int(seconds)))


# ----------------------------------------------------------------------------------------------
# child processes: the parent re-invokes this script with a hidden subcommand and reads one JSON
# line from the child's stdout.


def run_child(args: list[str], timeout_s: float, what: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                            start_new_session=True)
    try:
        # the child stops itself at timeout_s; the grace period covers a child stuck in C code
        out, _ = proc.communicate(timeout=timeout_s + 15)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        log(f"{what}: TIMED OUT after {timeout_s:.0f} s (killed)")
        return {"timeout": True, "error": f"timed out after {timeout_s:.0f} s"}
    finally:
        kill_group(proc)
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("{")]
    if not lines:
        return {"error": f"child exited with status {proc.returncode} and no result"}
    try:
        res = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"unparseable child output: {exc}"}
    if proc.returncode != 0 and "error" not in res:
        res["error"] = f"child exited with status {proc.returncode}"
    return res


def kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------------------------
# TNO pools


def make_tls_material(directory: Path, names: list[str]) -> dict[str, dict[str, str]]:
    """Throwaway CA + one RSA-2048 certificate per party, made with the openssl CLI."""
    def ossl(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, cwd=directory,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=tno-bench-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = directory / "leaf.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    out: dict[str, dict[str, str]] = {}
    for name in names:
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "leaf.ext")
        out[name] = {"key": str(directory / f"{name}.key"), "cert": str(directory / f"{name}.crt"),
                     "ca_cert": str(directory / "ca.crt")}
    return out


def make_pool(me: str, ports: dict[str, int], tls: dict[str, str] | None, max_retries: int = -1):
    """A TNO Pool for party `me` listening on 127.0.0.1:ports[me], with a client per other party.

    Peers are identified by address:port (TNO's default); with `tls`, both directions use
    mutual TLS (TNO's server and client contexts both set CERT_REQUIRED against ca_cert)."""
    from aiohttp import ClientTimeout
    from tno.mpc.communication import Pool

    kw: dict[str, Any] = dict(tls) if tls else {}
    pool = Pool(timeout=ClientTimeout(total=600), max_retries=max_retries, **kw)
    pool.add_http_server(port=ports[me], addr="127.0.0.1")
    for other, port in ports.items():
        if other != me:
            pool.add_http_client(other, "127.0.0.1", port)
    return pool


def pool_traffic(pool) -> tuple[int, int]:
    """(HTTP body bytes sent, messages sent) by this pool's clients so far."""
    sent = sum(h.total_bytes_sent for h in pool.pool_handlers.values())
    msgs = sum(h.msg_send_counter for h in pool.pool_handlers.values())
    return sent, msgs


# ----------------------------------------------------------------------------------------------
# (a) + (b): distributed keygen, then encryption and distributed decryption, in one child


class _KeygenLogCounter(logging.Handler):
    """Reads TNO's own end-of-keygen INFO lines (rounds, small-prime rejects, BF failures)."""

    RE_SP = re.compile(r"Checked (\d+) primes for small prime divisors in (\d+) rounds")
    RE_BIP = re.compile(r"Checked (\d+) candidates for biprimality")

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.small_prime_rejects: list[int] = []
        self.rounds: list[int] = []
        self.bf_failures: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if m := self.RE_SP.search(msg):
            self.small_prime_rejects.append(int(m.group(1)))
            self.rounds.append(int(m.group(2)))
        elif m := self.RE_BIP.search(msg):
            self.bf_failures.append(int(m.group(1)))


async def _keygen_child(a: argparse.Namespace) -> dict[str, Any]:
    from tno.mpc.communication import Serialization
    from tno.mpc.protocols.distributed_keygen import DistributedPaillier
    from tno.mpc.protocols.distributed_keygen import distributed_keygen as dk_mod

    Serialization.register_class(DistributedPaillier, check_annotations=False, overwrite=True)

    # count rounds (one _generate_pq call per party per round = one batch of candidates)
    calls: dict[int, int] = {}
    orig = DistributedPaillier._generate_pq.__func__  # type: ignore[attr-defined]

    async def counted(cls, pool, index, *args, **kwargs):  # noqa: ANN001
        calls[index] = calls.get(index, 0) + 1
        return await orig(cls, pool, index, *args, **kwargs)

    DistributedPaillier._generate_pq = classmethod(counted)  # type: ignore[method-assign]
    counter = _KeygenLogCounter()
    dk_logger = logging.getLogger(dk_mod.__name__)
    dk_logger.setLevel(logging.INFO)
    dk_logger.propagate = False
    dk_logger.addHandler(counter)

    tls = None
    tmp = None
    if a.keygen_tls:
        tmp = tempfile.TemporaryDirectory(prefix="tno-bench-certs-")
        tls = make_tls_material(Path(tmp.name), PARTY_NAMES)
    ports = dict(zip(PARTY_NAMES, free_ports(3)))
    pools = [make_pool(n, ports, tls[n] if tls else None) for n in PARTY_NAMES]
    await asyncio.sleep(0.2)  # let the client sessions and servers start

    res: dict[str, Any] = {"bits_requested": a.bits, "tls": bool(tls)}
    try:
        key_dir = Path(a.keys) if a.keys else None
        key_files = [key_dir / f"tno_key_{a.bits}_{n}.bin" for n in PARTY_NAMES] if key_dir else []
        if a.load_keys:
            t0 = time.perf_counter()
            schemes = await asyncio.gather(*[
                DistributedPaillier.load_private_key_from_bytes(f.read_bytes(), p, False)
                for f, p in zip(key_files, pools)
            ])
            res["loaded_keys_from"] = str(key_dir)
            res["load_s"] = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            schemes = await asyncio.gather(*[
                DistributedPaillier.from_security_parameter(
                    p,
                    corruption_threshold=a.t,
                    key_length=a.bits,
                    prime_threshold=a.prime_threshold,
                    correct_param_biprime=a.biprime_rounds,
                    stat_sec_shamir=a.stat_sec_shamir,
                    distributed=False,
                    precision=0,
                    batch_size=a.batch,
                )
                for p in pools
            ])
            wall = time.perf_counter() - t0
            await asyncio.sleep(0.05)  # let fire-and-forget sends finish before reading counters
            traffic = [pool_traffic(p) for p in pools]
            rounds = max(calls.values()) if calls else None
            res.update({
                "wall_s": wall,
                "rounds": rounds,
                "candidates": rounds * a.batch if rounds else None,
                "small_prime_rejects": max(counter.small_prime_rejects, default=None),
                "bf_tests": (max(counter.bf_failures) + 1) if counter.bf_failures else None,
                "bytes_sent_total": sum(b for b, _ in traffic),
                "messages_sent_total": sum(m for _, m in traffic),
            })
            if key_dir:
                key_dir.mkdir(parents=True, exist_ok=True)
                for s, f in zip(schemes, key_files):
                    f.write_bytes(s.store_private_key())
                res["saved_keys_to"] = str(key_dir)
        n = schemes[0].public_key.n
        assert all(s.public_key.n == n for s in schemes), "parties disagree on N"
        res["n_bits"] = n.bit_length()

        if a.decrypt_ops > 0:
            enc_ms, dec_ms = [], []
            # one untimed warm-up
            c = schemes[0].encrypt(7)
            assert all(d == 7 for d in await asyncio.gather(*[s.decrypt(c) for s in schemes]))
            for _ in range(a.decrypt_ops):
                m = secrets.randbelow(2**62)
                t0 = time.perf_counter()
                c = schemes[0].encrypt(m)
                t1 = time.perf_counter()
                decs = await asyncio.gather(*[s.decrypt(c) for s in schemes])
                t2 = time.perf_counter()
                if not all(d == m for d in decs):
                    raise RuntimeError(f"decryption mismatch: {m} -> {decs}")
                enc_ms.append((t1 - t0) * 1e3)
                dec_ms.append((t2 - t1) * 1e3)
            res["encrypt_ms"] = enc_ms
            res["decrypt_ms"] = dec_ms
    finally:
        for p in pools:
            await p.shutdown()
        if tmp:
            tmp.cleanup()
    return res


def keygen_figures(bits: int, runs: list[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, Any]]:
    ok = [r for r in runs if "wall_s" in r and "error" not in r]
    walls = [r["wall_s"] for r in ok]
    rounds = [r["rounds"] for r in ok if r.get("rounds")]
    spr = [r["wall_s"] / r["rounds"] for r in ok if r.get("rounds")]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    extra = {
        "rounds_median": med(rounds),
        "rounds_min": min(rounds, default=None),
        "rounds_max": max(rounds, default=None),
        "s_per_round": med(spr),
        "n_bits_median": med([r["n_bits"] for r in ok]),
        "bytes_sent_median": med([r["bytes_sent_total"] for r in ok]),
        "candidates_median": med([r["candidates"] for r in ok if r.get("candidates")]),
        "bf_tests_median": med([r["bf_tests"] for r in ok if r.get("bf_tests")]),
        "timed_out_runs": sum(1 for r in runs if r.get("timeout")),
        "failed_runs": sum(1 for r in runs if "error" in r and not r.get("timeout")),
        "params": {"parties": 3, "t": p["t"], "key_length": bits,
                   "prime_threshold": p["prime_threshold"],
                   "correct_param_biprime": p["biprime_rounds"], "batch_size": p["batch"],
                   "stat_sec_shamir": p["stat_sec_shamir"], "transport":
                   "https (mutual TLS)" if p["keygen_tls"] else "http",
                   "in_one_process": True},
        "per_run": [
            {k: r.get(k) for k in ("wall_s", "rounds", "n_bits", "bytes_sent_total",
                                   "messages_sent_total", "candidates", "small_prime_rejects",
                                   "bf_tests", "timeout", "error")
             if r.get(k) is not None}
            for r in runs
        ],
    }
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        extra["errors"] = errors
    return [figure(f"keygen_{bits}_s", "s", walls, extra)]


def decrypt_figures(bits: int, res: dict[str, Any]) -> list[dict[str, Any]]:
    if "decrypt_ms" not in res:
        return []
    common = {"n_bits": res.get("n_bits"), "parties": 3}
    return [
        figure(f"encrypt_{bits}_ms", "ms", res["encrypt_ms"],
               {**common, "what": "encrypt(m) incl. fresh r^N mod N^2, one party, no "
                                  "precomputed randomness"}),
        figure(f"decrypt_{bits}_ms", "ms", res["decrypt_ms"],
               {**common, "what": "distributed decryption, all 3 parties in one process "
                                  "(partial decryptions exchanged over HTTP)",
                "transport": "https (mutual TLS)" if res.get("tls") else "http"}),
    ]


def keygen_child_args(a: argparse.Namespace, bits: int, decrypt_ops: int, keys: str | None,
                      load: bool) -> list[str]:
    args = ["_keygen-child", "--bits", str(bits), "--t", str(a.t),
            "--prime-threshold", str(a.prime_threshold),
            "--biprime-rounds", str(a.biprime_rounds), "--batch", str(a.batch),
            "--stat-sec-shamir", str(a.stat_sec_shamir),
            "--decrypt-ops", str(decrypt_ops), "--timeout-s", str(a.timeout_s)]
    if a.keygen_tls:
        args.append("--keygen-tls")
    if keys:
        args += ["--keys", keys]
    if load:
        args.append("--load-keys")
    return args


def do_keygen(a: argparse.Namespace, decrypt_ops: int) -> list[dict[str, Any]]:
    figs: list[dict[str, Any]] = []
    for bits in a.bits:
        runs: list[dict[str, Any]] = []
        dec_res: dict[str, Any] | None = None
        for i in range(a.runs):
            # decryption is measured once per key size, after the first successful keygen
            want_dec = decrypt_ops if dec_res is None else 0
            keys = a.save_keys if (a.save_keys and dec_res is None) else None
            log(f"keygen {bits} bits: run {i + 1}/{a.runs} (timeout {a.timeout_s:.0f} s)"
                + (f", then {want_dec} decryptions" if want_dec else ""))
            r = run_child(keygen_child_args(a, bits, want_dec, keys, False), a.timeout_s,
                          f"keygen {bits} run {i + 1}")
            runs.append(r)
            if "wall_s" in r:
                log(f"  {r['wall_s']:.2f} s, {r.get('rounds')} rounds, N = {r.get('n_bits')} bits,"
                    f" {r.get('bytes_sent_total', 0) / 1e6:.1f} MB sent")
                if want_dec and "decrypt_ms" in r:
                    dec_res = r
                    log(f"  encrypt median {statistics.median(r['encrypt_ms']):.2f} ms, "
                        f"decrypt median {statistics.median(r['decrypt_ms']):.2f} ms")
            else:
                log(f"  {'timed out' if r.get('timeout') else 'failed'}: {r.get('error')}")
        figs += keygen_figures(bits, runs, vars(a))
        if dec_res:
            figs += decrypt_figures(bits, dec_res)
    return figs


def do_decrypt(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Decryption only: from keys saved by an earlier `keygen --save-keys DIR` if present,
    otherwise one keygen (reported as a 1-run keygen figure) followed by the decryptions."""
    figs: list[dict[str, Any]] = []
    for bits in a.bits:
        have = a.keys and all((Path(a.keys) / f"tno_key_{bits}_{n}.bin").exists()
                              for n in PARTY_NAMES)
        if have:
            log(f"decrypt {bits} bits: {a.ops} ops with keys from {a.keys}")
            r = run_child(keygen_child_args(a, bits, a.ops, a.keys, True), a.timeout_s,
                          f"decrypt {bits}")
        else:
            log(f"decrypt {bits} bits: no saved keys, one keygen first (timeout "
                f"{a.timeout_s:.0f} s), then {a.ops} ops")
            r = run_child(keygen_child_args(a, bits, a.ops, a.keys, False), a.timeout_s,
                          f"keygen+decrypt {bits}")
            figs += keygen_figures(bits, [r], vars(a))
        if "error" in r:
            log(f"  failed: {r['error']}")
            figs.append(figure(f"decrypt_{bits}_ms", "ms", [], {"error": r["error"]}))
            continue
        log(f"  encrypt median {statistics.median(r['encrypt_ms']):.2f} ms, "
            f"decrypt median {statistics.median(r['decrypt_ms']):.2f} ms")
        figs += decrypt_figures(bits, r)
    return figs


# ----------------------------------------------------------------------------------------------
# (c) tno.mpc.communication between two processes


async def _comm_child(a: argparse.Namespace) -> dict[str, Any]:
    """role 'driver' measures; role 'echo' answers. Message ids keep the phases apart."""
    ports = {"driver": a.driver_port, "echo": a.echo_port}
    peer = "echo" if a.role == "driver" else "driver"
    tls = None
    if a.certs:
        d = Path(a.certs)
        tls = {"key": str(d / f"{a.role}.key"), "cert": str(d / f"{a.role}.crt"),
               "ca_cert": str(d / "ca.crt")}
    pool = make_pool(a.role, ports, tls, max_retries=max(5, int(a.timeout_s)))
    await asyncio.sleep(0.2)
    body = "x" * a.msg_bytes

    def small(seq: int) -> dict[str, Any]:  # a fresh object: asend serialises it later
        return {"seq": seq, "body": body}
    out: dict[str, Any] = {"role": a.role, "tls": bool(tls)}
    try:
        if a.role == "echo":
            await pool.recv(peer, "hello")
            await pool.send(peer, "hello", msg_id="hello-ack")
            for i in range(a.pipeline_warmup):
                await pool.recv(peer, f"pipew-{i}")
            await pool.send(peer, a.pipeline_warmup, msg_id="pipew-done")
            for rep in range(a.reps):
                for i in range(a.rtt_warmup + a.rtt_n):
                    m = await pool.recv(peer, f"rtt{rep}-{i}")
                    await pool.send(peer, m, msg_id=f"rtt{rep}-{i}-r")
                for i in range(a.pipeline_n):
                    await pool.recv(peer, f"pipe{rep}-{i}")
                await pool.send(peer, a.pipeline_n, msg_id=f"pipe{rep}-done")
                if a.bulk_mb > 0:
                    m = await pool.recv(peer, f"bulk{rep}")
                    await pool.send(peer, len(m), msg_id=f"bulk{rep}-ack")
            await pool.recv(peer, "bye")
            return out

        # driver
        t0 = time.perf_counter()
        await pool.send(peer, "hello", msg_id="hello")
        await pool.recv(peer, "hello-ack")
        out["connect_s"] = time.perf_counter() - t0
        # untimed pipelined warm-up: aiohttp opens up to 100 keep-alive connections (each a TLS
        # handshake) the first time many sends are in flight; measure the steady state after it
        for i in range(a.pipeline_warmup):
            pool.asend(peer, small(i), msg_id=f"pipew-{i}")
        await pool.recv(peer, "pipew-done")
        rtt_p50, rtt_p99, rtt_mean, pipe_rate, bulk_rate = [], [], [], [], []
        payload = os.urandom(int(a.bulk_mb * 1e6)) if a.bulk_mb > 0 else b""
        for rep in range(a.reps):
            # round trip: asend a small message, wait for the echo of it (the usual TNO pattern:
            # async send + recv). Each message is its own HTTP POST (keep-alive connection).
            rtts = []
            for i in range(a.rtt_warmup + a.rtt_n):
                t = time.perf_counter()
                pool.asend(peer, small(i), msg_id=f"rtt{rep}-{i}")
                await pool.recv(peer, f"rtt{rep}-{i}-r")
                if i >= a.rtt_warmup:
                    rtts.append((time.perf_counter() - t) * 1e3)
            rtt_p50.append(percentile(rtts, 50))
            rtt_p99.append(percentile(rtts, 99))
            rtt_mean.append(statistics.fmean(rtts))
            # pipelined: schedule N small asends at once, wait until the echo has them all
            t = time.perf_counter()
            for i in range(a.pipeline_n):
                pool.asend(peer, small(i), msg_id=f"pipe{rep}-{i}")
            got = await pool.recv(peer, f"pipe{rep}-done")
            assert got == a.pipeline_n
            pipe_rate.append(a.pipeline_n / (time.perf_counter() - t))
            # bulk: one message of bulk_mb MB of random bytes, until the receiver's ack arrives
            if a.bulk_mb > 0:
                t = time.perf_counter()
                await pool.send(peer, payload, msg_id=f"bulk{rep}")
                n = await pool.recv(peer, f"bulk{rep}-ack")
                assert n == len(payload)
                bulk_rate.append(len(payload) / 1e6 / (time.perf_counter() - t))
            log(f"  comm rep {rep + 1}/{a.reps}: rtt p50 {rtt_p50[-1]:.3f} ms, p99 "
                f"{rtt_p99[-1]:.3f} ms, {pipe_rate[-1]:.0f} msg/s pipelined"
                + (f", bulk {bulk_rate[-1]:.1f} MB/s" if bulk_rate else ""))
        await pool.send(peer, "bye", msg_id="bye")
        out.update({"rtt_p50_ms": rtt_p50, "rtt_p99_ms": rtt_p99, "rtt_mean_ms": rtt_mean,
                    "pipeline_msgs_per_s": pipe_rate, "bulk_mb_per_s": bulk_rate})
        return out
    finally:
        await asyncio.sleep(0.05)
        await pool.shutdown()


def do_comm(a: argparse.Namespace) -> list[dict[str, Any]]:
    tmp = tempfile.TemporaryDirectory(prefix="tno-bench-comm-")
    certs: str | None = None
    transport = "http (plain)"
    if not a.no_tls:
        try:
            make_tls_material(Path(tmp.name), ["driver", "echo"])
            certs = tmp.name
            transport = "https, mutual TLS (RSA-2048 certificates from a throwaway CA)"
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"comm: could not create certificates with the openssl CLI ({exc}); "
                "falling back to plain HTTP")
    dport, eport = free_ports(2)
    common = ["--driver-port", str(dport), "--echo-port", str(eport),
              "--reps", str(a.comm_reps), "--rtt-n", str(a.rtt_n), "--rtt-warmup",
              str(a.rtt_warmup), "--pipeline-n", str(a.pipeline_n),
              "--pipeline-warmup", str(a.pipeline_warmup), "--bulk-mb", str(a.bulk_mb),
              "--msg-bytes", str(a.msg_bytes), "--timeout-s", str(a.timeout_s)]
    if certs:
        common += ["--certs", certs]
    log(f"comm: two processes on 127.0.0.1:{dport} and :{eport}, {transport}; "
        f"{a.comm_reps} reps of {a.rtt_n} round trips, {a.pipeline_n} pipelined messages"
        + (f", {a.bulk_mb:g} MB bulk" if a.bulk_mb > 0 else ""))
    cmd = [sys.executable, str(Path(__file__).resolve()), "_comm-child", "--role", "echo", *common]
    echo = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None, text=True,
                            start_new_session=True)
    try:
        res = run_child(["_comm-child", "--role", "driver", *common], a.timeout_s, "comm")
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    finally:
        kill_group(echo)
        tmp.cleanup()
    extra = {"transport": transport, "processes": 2, "msg_bytes_body": a.msg_bytes,
             "reps": a.comm_reps}
    if "error" in res:
        log(f"comm failed: {res['error']}")
        return [figure("comm_rtt_p50_ms", "ms", [], {**extra, "error": res["error"]})]
    figs = [
        figure("comm_rtt_p50_ms", "ms", res["rtt_p50_ms"],
               {**extra, "messages_per_rep": a.rtt_n, "warmup": a.rtt_warmup}),
        figure("comm_rtt_p99_ms", "ms", res["rtt_p99_ms"],
               {**extra, "messages_per_rep": a.rtt_n, "warmup": a.rtt_warmup}),
        figure("comm_rtt_mean_ms", "ms", res["rtt_mean_ms"], {**extra, "messages_per_rep": a.rtt_n}),
        figure("comm_pipelined_msgs_per_s", "msg/s", res["pipeline_msgs_per_s"],
               {**extra, "messages_per_rep": a.pipeline_n, "warmup": a.pipeline_warmup}, nd=1),
    ]
    if res.get("bulk_mb_per_s"):
        figs.append(figure("comm_bulk_mb_per_s", "MB/s", res["bulk_mb_per_s"],
                           {**extra, "bytes_per_rep": int(a.bulk_mb * 1e6),
                            "what": "one TNO message of random bytes, until the receiver's "
                                    "ack arrives; MB = 10^6 bytes"}, nd=2))
    return figs


# ----------------------------------------------------------------------------------------------
# CLI


def int_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def add_keygen_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--t", type=int, default=1, help="corruption threshold (default 1)")
    p.add_argument("--prime-threshold", type=int, default=2000,
                   help="TNO prime_threshold: small-prime test bound (default 2000)")
    p.add_argument("--biprime-rounds", type=int, default=40,
                   help="TNO correct_param_biprime (default 40)")
    p.add_argument("--batch", type=int, default=100, help="TNO batch_size (default 100)")
    p.add_argument("--stat-sec-shamir", type=int, default=40,
                   help="TNO stat_sec_shamir (default 40, TNO's default)")
    p.add_argument("--keygen-tls", action="store_true",
                   help="run the 3 in-process keygen pools over mutual TLS (default: plain HTTP, "
                        "as TNO's own tests do)")


def add_comm_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comm-reps", type=int, default=3, help="repetitions of each comm phase")
    p.add_argument("--rtt-n", type=int, default=1000, help="round trips per rep (default 1000)")
    p.add_argument("--rtt-warmup", type=int, default=50, help="untimed round trips per rep")
    p.add_argument("--pipeline-n", type=int, default=5000,
                   help="pipelined small messages per rep (default 5000)")
    p.add_argument("--pipeline-warmup", type=int, default=500,
                   help="untimed pipelined messages sent once before the reps (default 500)")
    p.add_argument("--bulk-mb", type=float, default=100,
                   help="bulk message size in MB (10^6 bytes; default 100; 0 skips)")
    p.add_argument("--msg-bytes", type=int, default=64,
                   help="body size of a small message (a dict {seq, body}); default 64")
    p.add_argument("--no-tls", action="store_true", help="plain HTTP instead of mutual TLS")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", metavar="{all,keygen,decrypt,comm}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout-s", type=float, default=1800,
                       help="hard limit per measured unit (one keygen run, one decryption batch, "
                            "one comm session); default 1800")
        p.add_argument("--out", help="also write the JSON report to this file")

    p_all = sub.add_parser("all", help="keygen (+ decryption after the first run) and comm")
    p_kg = sub.add_parser("keygen", help="(a) distributed keygen, 3 parties in one process")
    p_dec = sub.add_parser("decrypt", help="(b) encryption + distributed decryption")
    p_cm = sub.add_parser("comm", help="(c) tno.mpc.communication, two processes")
    for p in (p_all, p_kg):
        p.add_argument("--bits", type=int_list, default=[512, 1024],
                       help="comma-separated key lengths (size of N), default 512,1024")
        p.add_argument("--runs", type=int, default=5, help="keygen runs per key length (default 5)")
        p.add_argument("--decrypt-ops", type=int, default=(50 if p is p_all else 0),
                       help="encryptions+decryptions measured after the first keygen run of each "
                            "key length (default: 50 for all, 0 for keygen)")
        p.add_argument("--save-keys", metavar="DIR",
                       help="store the first run's key shares per key length in DIR "
                            "(for `decrypt --keys DIR`)")
    p_dec.add_argument("--bits", type=int_list, default=[1024], help="key lengths, default 1024")
    p_dec.add_argument("--ops", type=int, default=50, help="encryptions+decryptions (default 50)")
    p_dec.add_argument("--keys", metavar="DIR",
                       help="use key shares saved by `keygen --save-keys DIR` (else one keygen runs "
                            "first, and its shares are saved to DIR if given)")
    for p in (p_all, p_kg, p_dec):
        add_keygen_params(p)
    for p in (p_all, p_cm):
        add_comm_params(p)
    for p in (p_all, p_kg, p_dec, p_cm):
        common(p)
    p_all.add_argument("--quick", action="store_true",
                       help="a few-minute run: --bits 512 --runs 3 --decrypt-ops 20, "
                            "--rtt-n 300 --pipeline-n 1000 --bulk-mb 20")

    # hidden children
    c = sub.add_parser("_keygen-child")
    c.add_argument("--bits", type=int, required=True)
    c.add_argument("--decrypt-ops", type=int, default=0)
    c.add_argument("--keys")
    c.add_argument("--load-keys", action="store_true")
    c.add_argument("--timeout-s", type=float, default=1800)
    add_keygen_params(c)
    c = sub.add_parser("_comm-child")
    c.add_argument("--role", choices=["driver", "echo"], required=True)
    c.add_argument("--driver-port", type=int, required=True)
    c.add_argument("--echo-port", type=int, required=True)
    c.add_argument("--reps", type=int, required=True)
    c.add_argument("--rtt-n", type=int, required=True)
    c.add_argument("--rtt-warmup", type=int, required=True)
    c.add_argument("--pipeline-n", type=int, required=True)
    c.add_argument("--pipeline-warmup", type=int, required=True)
    c.add_argument("--bulk-mb", type=float, required=True)
    c.add_argument("--msg-bytes", type=int, required=True)
    c.add_argument("--certs")
    c.add_argument("--timeout-s", type=float, default=1800)
    return ap


def child_main(a: argparse.Namespace, coro_fn) -> None:  # noqa: ANN001
    quiet_tno()
    arm_watchdog(a.timeout_s + 30)
    try:
        res = asyncio.run(asyncio.wait_for(coro_fn(a), timeout=a.timeout_s))
    except (asyncio.TimeoutError, TimeoutError):
        res = {"timeout": True, "error": f"timed out after {a.timeout_s:.0f} s"}
        print(json.dumps(res), flush=True)
        os._exit(1)
    except BaseException as exc:  # report, never hang
        res = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(res), flush=True)
        os._exit(1)
    print(json.dumps(res), flush=True)
    sys.stdout.flush()
    os._exit(0)  # do not wait for executor threads


def check_env() -> None:
    try:
        import gmpy2  # noqa: F401
        import tno.mpc.communication  # noqa: F401
        import tno.mpc.protocols.distributed_keygen  # noqa: F401
    except ImportError as exc:
        sys.exit(f"run.py: TNO's packages do not import ({exc}).\n"
                 f"Run {HERE / 'setup.sh'} and use {HERE / '.venv/bin/python'}.")


def main() -> None:
    ap = build_parser()
    argv = sys.argv[1:]
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["all", *argv]
    a = ap.parse_args(argv)
    if a.cmd == "_keygen-child":
        child_main(a, _keygen_child)
    if a.cmd == "_comm-child":
        child_main(a, _comm_child)

    quiet_tno()
    check_env()
    if a.cmd == "all" and a.quick:
        given = {x.split("=", 1)[0] for x in argv}
        defaults = {"--bits": ("bits", [512]), "--runs": ("runs", 3),
                    "--decrypt-ops": ("decrypt_ops", 20), "--rtt-n": ("rtt_n", 300),
                    "--pipeline-n": ("pipeline_n", 1000), "--bulk-mb": ("bulk_mb", 20)}
        for flag, (attr, val) in defaults.items():
            if flag not in given:
                setattr(a, attr, val)

    started = time.time()
    figs: list[dict[str, Any]] = []
    if a.cmd in ("all", "keygen"):
        figs += do_keygen(a, a.decrypt_ops)
    if a.cmd == "decrypt":
        figs += do_decrypt(a)
    if a.cmd in ("all", "comm"):
        figs += do_comm(a)

    params = {k: v for k, v in vars(a).items() if k not in ("out",)}
    report = {
        "peer": "tno",
        "versions": versions(),
        "machine": machine_info(),
        "params": params,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "figures": figs,
    }
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
        log(f"wrote {a.out}")
    print(text)
    log(f"done in {report['elapsed_s']} s")


if __name__ == "__main__":
    random.seed()
    main()
