"""Benchmark: our model server vs the raw forward-pass floor, full-size DistilBERT on this machine's CPUs.

    python -m bench.model_server [--duration 15] [--clients 1,4,16] [--rounds 1] [--json OUT]
                                 [--server-arg=--flag=value ...]

One run measures, with the same model and thread count:

- floor:  in-process ``tokenizer(texts)`` + ``model(**tokens)`` under ``torch.inference_mode``, for the
          seed request (batch 2) and for 8 seed requests at once (batch 16, the batching ceiling);
          measured right before and right after each client level (the mean is that level's floor),
          so a machine whose load changes during the run still compares like with like;
- server: ``python -m model.server`` (the image's command) on a free port, closed-loop HTTP/1.1
          keep-alive clients sending the seed request ``{"instances": ["Hello, my dog is cute",
          "I am feeling happy"]}`` to /v1/models/bert-sentiment:predict, at 1, 4 and 16 clients.

The model is DistilBERT's real architecture (DistilBertConfig defaults: dim 768, 6 layers, vocabulary
30522) with random weights, written once by ``model.tiny_model --full-size`` into the cache directory.
Targets (notes/serving-anchors.md): p50 at 1 client <= 1.15x the batch-2 floor; throughput at 16
clients >= 1.5x the 1-client throughput and >= 1.6x the batch-2 floor rate. Absolute numbers depend
on the machine and its load: compare the ratios of one run. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import orjson

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("KSA_CACHE", pathlib.Path.home() / ".cache" / "kserve-ansible"))
MODEL_NAME = "bert-sentiment"
SEED_TEXTS = ["Hello, my dog is cute", "I am feeling happy"]
SEED_BODY = orjson.dumps({"instances": SEED_TEXTS})


def full_size_model(directory: pathlib.Path) -> pathlib.Path:
    if not (directory / "model.safetensors").is_file():
        from model.tiny_model import write_classifier

        print(f"writing full-size DistilBERT (random weights) to {directory} ...", flush=True)
        write_classifier(directory, full_size=True)
    return directory


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------------- floor
class Floor:
    """tokenize + forward in this process, same model and threads as the server: what no server can beat."""

    def __init__(self, model_dir: pathlib.Path, threads: int):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def measure(self, seconds: float) -> dict[str, dict[str, float]]:
        """p50/p99 for the seed request (batch 2) and 8 seed requests at once (batch 16)."""
        results = {}
        for name, texts in (("batch2", SEED_TEXTS), ("batch16", SEED_TEXTS * 8)):
            with self.torch.inference_mode():
                for _ in range(3):  # warm-up
                    self.model(**self.tokenizer(texts, padding=True, return_tensors="pt"))
                latencies = []
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    self.model(**self.tokenizer(texts, padding=True, return_tensors="pt"))
                    latencies.append(time.perf_counter() - start)
            results[name] = floor_figures(statistics.median(latencies), len(texts))
            results[name]["p99_ms"] = percentile(latencies, 0.99) * 1000
        return results


def floor_figures(p50_seconds: float, texts: int) -> dict[str, float]:
    """p50 and the request rate it allows, in seed requests (2 texts) per second."""
    return {"p50_ms": p50_seconds * 1000, "requests_per_s": (texts / 2) / p50_seconds}


def mean_floor(before: dict, after: dict) -> dict:
    texts = {"batch2": 2, "batch16": 16}
    return {
        name: floor_figures((before[name]["p50_ms"] + after[name]["p50_ms"]) / 2000, texts[name])
        for name in before
    }


# --------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: pathlib.Path, port: int, extra_args: list[str], log_path: pathlib.Path):
    command = [
        sys.executable,
        "-m",
        "model.server",
        f"--model_name={MODEL_NAME}",
        f"--model_dir={model_dir}",
        f"--http_port={port}",
        "--enable_grpc=false",
        "--enable_docs_url=true",
        *extra_args,
    ]
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the server's lifetime
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return process, command
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not become ready in 300 s")


class Client:
    """One keep-alive HTTP/1.1 connection sending the seed request in a closed loop (cheap on CPU)."""

    def __init__(self, port: int):
        self.port = port
        self.request = (
            f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(SEED_BODY)}\r\n\r\n"
        ).encode() + SEED_BODY

    async def run(self, until: float, record_after: float, latencies: list[float]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while (start := time.perf_counter()) < until:
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"server answered {head[:200]!r}")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if start >= record_after:
                    latencies.append(time.perf_counter() - start)
        finally:
            writer.close()


async def load_level(port: int, clients: int, seconds: float, warmup: float) -> dict[str, float]:
    latencies: list[float] = []
    begin = time.perf_counter()
    record_after, until = begin + warmup, begin + warmup + seconds
    await asyncio.gather(*(Client(port).run(until, record_after, latencies) for _ in range(clients)))
    return {
        "clients": clients,
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "requests": len(latencies),
    }


def scrape_batch_sizes(port: int) -> tuple[float, float]:
    """(forward passes, texts) counted by the server's batch-size histogram."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        for key in ("kserve_ansible_model_batch_size_count", "kserve_ansible_model_batch_size_sum"):
            if line.startswith(key + "{"):
                values[key] = float(line.rsplit(" ", 1)[1])
    return values.get("kserve_ansible_model_batch_size_count", 0.0), values.get(
        "kserve_ansible_model_batch_size_sum", 0.0
    )


# --------------------------------------------------------------------------------------------- report
def load_average() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def ratios(levels: list[dict]) -> dict[str, float]:
    """The headline ratios of one round (each level against the floor measured around it)."""
    by_clients = {level["clients"]: level for level in levels}
    one, many = by_clients[min(by_clients)], by_clients[max(by_clients)]
    return {
        "p50_1_client_over_floor": one["p50_ms"] / one["floor"]["batch2"]["p50_ms"],
        "throughput_most_over_1_client": many["requests_per_s"] / one["requests_per_s"],
        "throughput_most_over_floor_rate": many["requests_per_s"] / many["floor"]["batch2"]["requests_per_s"],
        "throughput_most_over_batch16_rate": many["requests_per_s"]
        / many["floor"]["batch16"]["requests_per_s"],
    }


def report(result: dict) -> str:
    lines = [
        f"machine: {result['cpus']} CPUs, {result['threads']} compute threads; "
        f"load average before {result['load_before']}, after {result['load_after']}",
        "",
        "| round | clients | req/s | p50 ms | p99 ms | texts/pass | floor b2 p50 ms | floor b16 p50 ms "
        "| p50 / floor | req/s / floor b2 rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, levels in enumerate(result["rounds"], 1):
        for level in levels:
            floor2, floor16 = level["floor"]["batch2"], level["floor"]["batch16"]
            lines.append(
                f"| {number} | {level['clients']} | {level['requests_per_s']:.1f} | {level['p50_ms']:.1f} "
                f"| {level['p99_ms']:.1f} | {level['texts_per_pass']:.1f} | {floor2['p50_ms']:.1f} "
                f"| {floor16['p50_ms']:.1f} | {level['p50_ms'] / floor2['p50_ms']:.2f}x "
                f"| {level['requests_per_s'] / floor2['requests_per_s']:.2f}x |"
            )
    headline = result["ratios"]
    most = max(level["clients"] for level in result["rounds"][0])
    lines += [
        "",
        f"(median over {len(result['rounds'])} round(s); floors measured right before and after each level)",
        f"p50 at 1 client / batch-2 floor p50: {headline['p50_1_client_over_floor']:.2f}x "
        "(target <= 1.2x, <= 1.15x beats stock; stock KServe HF server 1.24x)",
        f"throughput {most} clients / 1 client: {headline['throughput_most_over_1_client']:.2f}x "
        "(target >= 1.5x; stock ~1.0x)",
        f"throughput {most} clients / batch-2 floor rate: {headline['throughput_most_over_floor_rate']:.2f}x "
        "(target >= 1.6x; stock 0.80x)",
        f"throughput {most} clients / batch-16 floor rate (the ceiling): "
        f"{headline['throughput_most_over_batch16_rate']:.2f}x",
    ]
    return "\n".join(lines)


def run_round(floor: Floor, port: int, clients: list[int], args) -> list[dict]:
    """floor, level, floor, level, ... floor: each level is compared with the floors around it."""
    floors = [floor.measure(args.floor_seconds)]
    levels = []
    for count in clients:
        passes_before, texts_before = scrape_batch_sizes(port)
        print(f"  {count} client(s) for {args.duration:.0f} s ...", flush=True)
        level = asyncio.run(load_level(port, count, args.duration, args.warmup))
        passes, texts = scrape_batch_sizes(port)
        level["texts_per_pass"] = (texts - texts_before) / max(1.0, passes - passes_before)
        floors.append(floor.measure(args.floor_seconds))
        level["floor"] = mean_floor(floors[-2], floors[-1])
        levels.append(level)
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_server", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per client level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    parser.add_argument("--floor-seconds", type=float, default=4.0, help="seconds per floor measurement")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the levels; ratios are the median")
    parser.add_argument("--model-dir", type=pathlib.Path, default=CACHE / "bench" / "distilbert-full-random")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results as JSON here")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra model server flag, e.g. --server-arg=--max_batch_wait_ms=2",
    )
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]

    from model.cpu import compute_threads, schedulable_cpus

    threads = compute_threads()
    model_dir = full_size_model(args.model_dir)
    result = {"cpus": schedulable_cpus(), "threads": threads, "load_before": load_average(), "rounds": []}
    floor = Floor(model_dir, threads)
    port = free_port()
    log_path = pathlib.Path(tempfile.gettempdir()) / f"bench-model-server-{port}.log"
    process, command = start_server(model_dir, port, args.server_arg, log_path)
    result["server_command"] = command
    try:
        for number in range(1, args.rounds + 1):
            print(f"round {number}: floor + {clients} clients ...", flush=True)
            result["rounds"].append(run_round(floor, port, clients, args))
    finally:
        process.terminate()
        process.wait(30)
    result["load_after"] = load_average()
    per_round = [ratios(levels) for levels in result["rounds"]]
    result["ratios"] = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    print()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
