"""Capacity model: replicas, GPUs and autoscaling for a target number of sessions.

Reads the benchmark results in bench/results (e2e.json and load.json from
this package; stt.json, tts.json, mt.json and gpu.json from the model
benchmarks when present), applies the stated traffic assumptions and writes
bench/CAPACITY.md and bench/results/capacity.json. Every figure in the
document names the file it came from, or says it is an assumption.

STT's GPU work comes from the cost proxies bench.stt_bench measures on the
CPU in every run (stt_cost.json, else stt.json: decodes, encoder seconds of
audio and decoder tokens, partials and finals apart), priced in gpu.json's
decodes; without them, from the fixed assumption of a partial every 0.6 s
at full cost.
Monthly cost: the GPUs times the per-GPU-hour prices in bench/prices.toml.

    python -m bench.capacity [--sessions 10000] [--talk-ratio 0.4] [--utterance-s 4]
                             [--prices bench/prices.toml]
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import RESULTS, ROOT, machine, read_result, table, write_result

DOC = Path(__file__).resolve().parent / "CAPACITY.md"
HPA_YAML = ROOT / "deploy" / "k8s" / "hpa.yaml"
# Models that production would run on GPUs, in order of preference, per role.
GPU_MODELS = {"stt": ("whisper-large-v3-turbo", "whisper-base"),
              "mt": ("nllb-200-distilled-600M", "opus-mt-tc-big"), "tts": ("vits-mms",)}
FALLBACK_MT_SENTENCES_PER_CORE = 20.0  # used only when mt.json is absent
PRICES = Path(__file__).resolve().parent / "prices.toml"
SEED_MONTHLY_USD = 11_600
SEED_OPTIMISED_USD = (4_000, 5_000)
"""The seed's estimate for 10,000 sessions (18 T4-class GPUs for STT and MT), and optimised."""
KINDS = ("partial", "final")


@dataclass(frozen=True, slots=True)
class Assumptions:
    sessions: int = 10_000
    """Concurrent two-party sessions."""
    talk_ratio: float = 0.4
    """Share of wall time each participant speaks (the rest: listening, pauses)."""
    utterance_s: float = 4.0
    """Mean utterance length."""
    partial_interval_s: float = 0.6
    """STT partial decode period while someone speaks (settings.stt.partial_interval_ms)."""
    gpu_utilisation: float = 0.6
    """Share of measured GPU throughput planned for: headroom for bursts and batching delay."""
    cpu_utilisation: float = 0.6
    """Target CPU utilisation of CPU services (also the HPA target)."""
    pod_cores: int = 1
    """CPU request of one session_svc / gateway pod: one Python process, one event loop,
    so one core (its gRPC threads add a few percent); a second core would mostly idle."""
    stt_batch: int = 32
    mt_batch: int = 32
    tts_batch: int = 32
    """Batch sizes whose measured throughput is planned for (gpu.json: a batch-32 call takes
    0.1-0.3 s on an H200, small next to the CPU stage times)."""
    headroom: float = 1.3
    """HPA maxReplicas over the computed need."""
    stt_encoder_share: float = 0.5
    """Share of a gpu.json Whisper decode's time spent in its encoder, where gpu.json does not
    time the encoder alone (an assumption: 32 encoder layers over 1500 frames against 40
    steps of a 4-layer decoder)."""


def _rows(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not data:
        return []
    for key in ("rows", "results", "engines"):
        if isinstance(data.get(key), list):
            return [r for r in data[key] if isinstance(r, dict)]
    return []


def _full_window(row: dict[str, Any]) -> bool:
    """STT is planned on Whisper's 30 s window rows; decode_equivalents scales the encoder's
    part to the windows stt_svc really encodes (gpu_proxy's 10 s rows check that scaling)."""
    return float(row.get("window_s", 30)) == 30


UNITS = {"stt": "utterances_per_s", "mt": "sentences_per_s", "tts": "audio_seconds_per_s"}


def _planned_row(gpu: dict[str, Any] | None, role: str, batch: int) -> dict[str, Any] | None:
    """The gpu.json row `role` is planned on: its preferred model's at the largest batch
    <= `batch` that gives a throughput."""
    unit = UNITS[role]
    rows = [r for r in _rows(gpu) if r.get("role") == role and _full_window(r)
            and int(r.get("batch", 1)) <= batch and isinstance(r.get(unit), int | float)]
    for model in (*GPU_MODELS[role], *sorted({str(r.get("model")) for r in rows})):
        fits = [r for r in rows if r.get("model") == model]
        if fits:
            return max(fits, key=lambda r: int(r.get("batch", 1)))
    return None


def _gpu_throughput(
    gpu: dict[str, Any] | None, role: str, batch: int,
) -> tuple[float, str, float | None] | None:
    """Units per second of the preferred model of `role` at the largest batch <= `batch`."""
    best = _planned_row(gpu, role, batch)
    if best is None:
        return None
    unit, call_s = UNITS[role], best.get("seconds_per_call")
    return (float(best[unit]), f"{best.get('model')} batch {best.get('batch')} ({unit})",
            float(call_s) if isinstance(call_s, int | float) else None)


def stt_proxies(stt: dict[str, Any] | None) -> dict[str, Any] | None:
    """stt.json's cost proxies pooled over its languages, per second of speech and kind:
    decodes, encoder seconds of audio and decoder tokens; None without them."""
    langs = [r for r in ((stt or {}).get("languages") or {}).values()
             if isinstance(r, dict) and r.get("cost") and r.get("speech_s")]
    if not langs:
        return None
    speech_s = sum(float(r["speech_s"]) for r in langs)
    utterances = sum(int(r["utterances"]) for r in langs)
    per_s = {name: {k: sum(float(r["cost"]["totals"][name][k]) for r in langs) / speech_s
                    for k in KINDS} for name in ("decodes", "encoder_s", "decoder_tokens")}
    return {"languages": sorted(((stt or {}).get("languages") or {}).keys()),
            "speech_s": round(speech_s, 1), "utterances": utterances,
            "utterance_s": round(speech_s / utterances, 2) if utterances else None,
            "per_speech_s": per_s}


def decode_equivalents(per_speech_s: dict[str, dict[str, float]], encoder_share: float,
                       window_s: float, tokens: int) -> dict[str, float]:
    """Per kind, the gpu.json decodes (a `window_s` window, `tokens` tokens) one second of
    speech costs: its encoder seconds priced at the encoder's share of a decode, its decoder
    tokens at the rest."""
    return {k: encoder_share * per_speech_s["encoder_s"][k] / window_s
            + (1 - encoder_share) * per_speech_s["decoder_tokens"][k] / tokens for k in KINDS}


def load_prices(path: Path = PRICES) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text())
    except OSError:
        return None


def monthly_costs(gpus: int, prices: dict[str, Any]) -> list[dict[str, Any]]:
    """Per GPU type: what `gpus` of them cost a month, on demand and spot."""
    hours = float(prices.get("hours_per_month", 730))
    return [{"gpu": name, "instance": p.get("instance"),
             "on_demand_usd_per_gpu_hour": p["on_demand_usd_per_gpu_hour"],
             "spot_usd_per_gpu_hour": p.get("spot_usd_per_gpu_hour"),
             "on_demand_usd_per_month": round(gpus * hours * p["on_demand_usd_per_gpu_hour"]),
             "spot_usd_per_month": (round(gpus * hours * p["spot_usd_per_gpu_hour"])
                                    if p.get("spot_usd_per_gpu_hour") is not None else None)}
            for name, p in prices.get("gpus", {}).items()]


def _find_number(data: Any, names: tuple[str, ...]) -> float | None:
    """The first numeric value under a key named like one of `names`, depth first."""
    if isinstance(data, dict):
        for k, v in data.items():
            if any(n in str(k).lower() for n in names) and isinstance(v, int | float):
                return float(v)
        for v in data.values():
            found = _find_number(v, names)
            if found is not None:
                return found
    elif isinstance(data, list):
        for v in data:
            found = _find_number(v, names)
            if found is not None:
                return found
    return None


def _load_numbers(load: dict[str, Any] | None) -> dict[str, Any]:
    """mcores per session of session_svc and gateway at the largest N within the goal latency,
    else at the largest N that delivered every utterance within 100 ms p99 added latency,
    else at the smallest N (CPU per session falls as N grows, and falls further once an
    overloaded mesh drops or delays work: the smaller N is the safe figure), and memory
    per session."""
    if not load or not load.get("steps"):
        return {}
    steps = load["steps"]
    goal_n = load.get("max_sessions_within_goal_latency")
    crossing = load.get("n_where_p99_added_exceeds_100ms")
    healthy = [s for s in steps if s.get("delivery_ratio", 0) >= 0.99
               and s.get("sessions_started", s["sessions"]) == s["sessions"]
               and (s["added_latency"].get("p99_ms") or float("inf")) <= 100.0
               and (crossing is None or s["sessions"] < crossing)]  # none past a failed N
    step = next((s for s in steps if s["sessions"] == goal_n), None) or (
        max(healthy, key=lambda s: s["sessions"]) if healthy else min(steps, key=lambda s: s["sessions"]))
    return {"n": step["sessions"], "within_goal": step["sessions"] == goal_n,
            "healthy_n": max((s["sessions"] for s in healthy), default=None),
            "mcores": step["cpu_per_session_millicores"],
            "kb": step["memory_per_session_kb"],
            "others_cores": step["cores"].get("other_processes"),
            "added_p99_ms": step["added_latency"]["p99_ms"],
            "crossing_n": load.get("n_where_p99_added_exceeds_100ms")}


def model(a: Assumptions, results: Path = RESULTS, prices_file: Path = PRICES) -> dict[str, Any]:
    e2e, load = read_result("e2e", results), read_result("load", results)
    gpu, mt, stt, tts = (read_result(n, results) for n in ("gpu", "mt", "stt", "tts"))
    floor = read_result("grpc_floor", results)
    load_200 = read_result("load_200ms", results)
    alone = read_result("load_session_svc", results)
    speakers = 2 * a.sessions
    speech_s_per_s = speakers * a.talk_ratio  # seconds of speech arriving per second
    utterances_per_s = speech_s_per_s / a.utterance_s
    decodes_per_utt = 1 + math.floor(a.utterance_s / a.partial_interval_s)
    # stt_cost.json: a bench.stt_bench run kept for this model (--out); else the latest stt.json
    proxies_file = next((n for n in ("stt_cost", "stt") if stt_proxies(read_result(n, results))), None)
    proxies = stt_proxies(read_result(proxies_file, results)) if proxies_file else None
    if proxies is not None:
        proxies["file"] = f"{proxies_file}.json"
    traffic = {
        "speakers": speakers, "stt_streams": speakers,
        "speech_seconds_per_s": speech_s_per_s, "utterances_per_s": utterances_per_s,
        "stt_decodes_per_utterance": decodes_per_utt,
        "stt_decodes_per_s": utterances_per_s * decodes_per_utt,
        "mt_sentences_per_s": utterances_per_s,
        "tts_audio_seconds_per_s": speech_s_per_s,  # translated speech lasts about as long
        "audio_chunks_per_s_in": speakers * 10,
    }
    services: dict[str, dict[str, Any]] = {}
    for role, demand, batch in (("stt", traffic["stt_decodes_per_s"], a.stt_batch),
                                ("mt", traffic["mt_sentences_per_s"], a.mt_batch),
                                ("tts", traffic["tts_audio_seconds_per_s"], a.tts_batch)):
        found = _gpu_throughput(gpu, role, batch)
        if found is None:
            services[role] = {"gpus": None, "source": "no bench/results/gpu.json row for this role"}
            continue
        per_gpu, source, call_s = found
        fixed = None
        if role == "stt":
            fixed = math.ceil(demand / (per_gpu * a.gpu_utilisation))
            finals_demand = utterances_per_s
            if proxies is not None:
                row = _planned_row(gpu, "stt", a.stt_batch) or {}
                share = a.stt_encoder_share
                if row.get("encoder_seconds_per_call") and row.get("seconds_per_call"):
                    share = float(row["encoder_seconds_per_call"]) / float(row["seconds_per_call"])
                eq = decode_equivalents(proxies["per_speech_s"], share,
                                        float(row.get("window_s", 30)), int(row.get("decoded_tokens", 40)))
                demand = speech_s_per_s * sum(eq.values())
                finals_demand = speech_s_per_s * eq["final"]
                proxies["encoder_share"] = round(share, 3)
                proxies["encoder_share_from"] = ("gpu.json" if share != a.stt_encoder_share
                                                 else "assumption")
                proxies["decode_equivalents_per_speech_s"] = {k: round(v, 4) for k, v in eq.items()}
                traffic["stt_decode_equivalents_per_s"] = round(demand, 1)
            source += (f" priced in {proxies['file']}'s measured cost proxies" if proxies is not None
                       else " with the fixed partial assumption")
        gpus = math.ceil(demand / (per_gpu * a.gpu_utilisation))
        services[role] = {"demand_per_s": demand, "per_gpu_per_s": round(per_gpu, 1), "gpus": gpus,
                          "replicas": gpus, "seconds_per_batch_call": call_s,
                          "source": f"gpu.json: {source} on {gpu.get('device')}"}  # type: ignore[union-attr]
        if role == "stt":
            services["stt"]["gpus_fixed_assumption"] = fixed
            services["stt_finals_only"] = {
                "gpus": math.ceil(finals_demand / (per_gpu * a.gpu_utilisation)),
                "source": "the same GPU figure with partials off: the finals' cost alone"}
    # CPU-only alternative for MT (Bergamot/Apertium), from mt.json.
    per_core = [float(r["sentences_per_s_per_core"]) for r in _rows(mt)
                if isinstance(r.get("sentences_per_s_per_core"), int | float)]
    mt_core = sum(per_core) / len(per_core) if per_core else None
    services["mt_cpu_alternative"] = {
        "sentences_per_s_per_core": round(mt_core or FALLBACK_MT_SENTENCES_PER_CORE, 2),
        "cores": math.ceil(traffic["mt_sentences_per_s"] / ((mt_core or FALLBACK_MT_SENTENCES_PER_CORE)
                                                              * a.cpu_utilisation)),
        "source": f"mt.json, mean of {len(per_core)} engine pairs" if mt_core else
                  f"assumption {FALLBACK_MT_SENTENCES_PER_CORE}/core (no mt.json)"}
    services["stt_cpu_reference"] = {
        "real_time_factor": _find_number(stt, ("rtf", "real_time_factor", "realtime")),
        "source": "stt.json" if stt else "no stt.json"}
    services["tts_cpu_reference"] = {
        "real_time_factor": _find_number(tts, ("rtf", "real_time_factor", "realtime")),
        "source": "tts.json" if tts else "no tts.json"}
    # session_svc from the run that loads it alone where there is one: the
    # gateway's run shares the cores with a gateway and its clients.
    sources = {"gateway": ("load.json", load),
               "session_svc": ("load_session_svc.json", alone) if alone else ("load.json", load)}
    for name, (file, data) in sources.items():
        plumbing = _load_numbers(data)
        if not plumbing:
            services[name] = {"replicas": None, "source": f"no bench/results/{file}"}
            continue
        mcores = max(plumbing["mcores"][name], 0.001)
        cores = a.sessions * mcores / 1000 / a.cpu_utilisation
        replicas = max(2, math.ceil(cores / a.pod_cores))
        # One session_svc is one event loop: past the most sessions it was measured to
        # carry within 100 ms p99, more cores do not help it. That many is its admission
        # limit (session.max_live_sessions) and the pods are sized below it.
        limit = plumbing["healthy_n"] if name == "session_svc" else None
        if limit:
            replicas = max(replicas, math.ceil(a.sessions / (limit * a.cpu_utilisation)))
        services[name] = {
            "millicores_per_session": mcores, "cores": round(cores, 1), "replicas": replicas,
            "sessions_per_pod": a.sessions // replicas,
            "sessions_per_core_measured": round(1000 / mcores),
            "memory_per_session_kb": plumbing["kb"][name],
            "memory_gib": round(a.sessions * plumbing["kb"][name] / 2**20, 2),
            **({"max_live_sessions": limit} if limit else {}),
            "source": f"{file} at N={plumbing['n']} "
                      f"({'within' if plumbing['within_goal'] else 'OUTSIDE'} the 50 ms p99 goal; "
                      f"p99 added {plumbing['added_p99_ms'] or 0:.0f} ms; other processes used "
                      f"{plumbing['others_cores'] or 0:.1f} cores meanwhile)"}
    hpa = _hpa(services, a, speakers)
    per_role = [s.get("gpus") for r, s in services.items() if r in ("stt", "mt", "tts")]
    total_gpus = sum(g for g in per_role if g) if all(per_role) else None
    prices = load_prices(prices_file)
    return {
        "benchmark": "capacity", "machine": machine(), "assumptions": asdict(a),
        "traffic": traffic, "services": services, "hpa": hpa,
        "total_gpus": total_gpus,
        "stt_proxies": proxies,
        "cost": None if prices is None or total_gpus is None else {
            "as_of": prices.get("as_of"), "source": prices.get("source"),
            "gpus_measured_on": (gpu or {}).get("device"),
            "rows": monthly_costs(total_gpus, prices),
            "seed_usd_per_month": SEED_MONTHLY_USD, "seed_optimised_usd_per_month": SEED_OPTIMISED_USD},
        "inputs": {n: bool(d) for n, d in (("e2e", e2e), ("load", load),
                                            ("load_session_svc", alone), ("gpu", gpu),
                                            ("stt", stt), ("tts", tts), ("mt", mt),
                                            ("grpc_floor", floor))},
        "grpc_floor": (floor or {}).get("steps", []),
        "load_machines": {name: {k: data["machine"].get(k) for k in (
            "cpu_count", "cpu_probe_ms", "cpu_probe_all_cores_ms")}
            for name, data in (("load", load), ("load_session_svc", alone))
            if data and "machine" in data},
        "chunk_size": _chunk_size_effect(load, load_200),
        "latency": (e2e or {}).get("pairs", {}).get("en<>es", {}).get("stages", {}).get("total"),
        "listener_wait": (e2e or {}).get("pairs", {}).get("en<>es", {}).get("listener_wait"),
    }


IN_FLIGHT_METHOD = {"stt_svc": "StreamingRecognize", "mt_svc": "Translate", "tts_svc": "Synthesize"}
"""The call whose in-flight count (dragoman_rpc_in_flight) scales each model service."""


def _hpa(services: dict[str, dict[str, Any]], a: Assumptions, streams: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in ("gateway", "session_svc"):
        s = services.get(name, {})
        if s.get("replicas"):
            out[name] = {"minReplicas": 2, "maxReplicas": math.ceil(s["replicas"] * a.headroom),
                         "metric": f"cpu averageUtilization {round(100 * a.cpu_utilisation)}%",
                         "cpu_utilization": round(100 * a.cpu_utilisation),
                         "scaleDown": "stabilizationWindowSeconds 600 (live streams are long)",
                         "scale_down_window_s": 600}
    if services.get("session_svc", {}).get("sessions_per_pod"):
        per_pod = services["session_svc"]["sessions_per_pod"]
        out["session_svc"]["extra_metric"] = f"pods metric active_sessions averageValue {per_pod}"
        out["session_svc"]["pods_metric"] = {"name": "dragoman_sessions_active", "average": per_pod}
    for role in ("stt", "mt", "tts"):
        s = services.get(role, {})
        if s.get("gpus"):
            batch = {"stt": a.stt_batch, "mt": a.mt_batch, "tts": a.tts_batch}[role]
            average = (math.ceil(streams / s["gpus"]) if role == "stt"
                       else math.ceil(batch * a.gpu_utilisation))
            target = (f"active streams per pod, averageValue {average}" if role == "stt"
                      else f"in-flight calls per pod, averageValue {average}")
            out[f"{role}_svc"] = {
                "minReplicas": max(1, math.ceil(s["gpus"] / 10)),
                "maxReplicas": math.ceil(s["gpus"] * a.headroom),
                "metric": f"pods metric: {target} (one GPU per pod)",
                "pods_metric": {"name": "dragoman_rpc_in_flight", "average": average,
                                "method": IN_FLIGHT_METHOD[f"{role}_svc"]},
                "scaleUp": "stabilizationWindowSeconds 0; a pod needs minutes to load weights",
                "scaleDown": "stabilizationWindowSeconds 900",
                "scale_down_window_s": 900}
    return out


K8S_NAMES = {"gateway": "gateway", "stt_svc": "stt", "mt_svc": "mt", "tts_svc": "tts",
             "session_svc": "session"}


def hpa_manifests(hpa: dict[str, dict[str, Any]]) -> str:
    """deploy/k8s/hpa.yaml: autoscaling/v2 HorizontalPodAutoscalers for the `hpa` plan."""
    docs = []
    for name, plan in hpa.items():
        target = K8S_NAMES[name]
        metrics_: list[dict[str, Any]] = []
        if "cpu_utilization" in plan:
            metrics_.append({"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": plan["cpu_utilization"]}}})
        if "pods_metric" in plan:
            pm = plan["pods_metric"]
            metric: dict[str, Any] = {"name": pm["name"]}
            if "method" in pm:
                metric["selector"] = {"matchLabels": {"method": pm["method"]}}
            metrics_.append({"type": "Pods", "pods": {"metric": metric, "target": {
                "type": "AverageValue", "averageValue": str(pm["average"])}}})
        behavior: dict[str, Any] = {"scaleDown": {
            "stabilizationWindowSeconds": plan["scale_down_window_s"],
            "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}}
        if "scaleUp" in plan:
            behavior["scaleUp"] = {"stabilizationWindowSeconds": 0}
        docs.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": target, "labels": {"app.kubernetes.io/name": target,
                                                     "app.kubernetes.io/part-of": "dragoman"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": target},
                     "minReplicas": plan["minReplicas"], "maxReplicas": plan["maxReplicas"],
                     "metrics": metrics_, "behavior": behavior}})
    header = ["# Generated by `python -m bench.capacity` from bench/results; do not edit.",
              "# Pods metrics come from Prometheus through a custom-metrics adapter",
              "# (e.g. prometheus-adapter) exposing the dragoman_* series of dragoman/metrics.py."]
    return "\n".join(header) + "\n" + yaml.safe_dump_all(docs, sort_keys=False)


def _chunk_size_effect(load: dict[str, Any] | None,
                       load_200: dict[str, Any] | None) -> list[dict[str, Any]]:
    """session_svc CPU per session with 100 and 200 ms messages, at each N both ran in full."""
    rows = []
    for small in (load or {}).get("steps", []):
        big = next((b for b in (load_200 or {}).get("steps", []) if b["sessions"] == small["sessions"]),
                   None)
        if big is None or min(small["delivery_ratio"], big["delivery_ratio"]) < 0.99:
            continue
        a = small["cpu_per_session_millicores"]["session_svc"]
        b = big["cpu_per_session_millicores"]["session_svc"]
        rows.append({"sessions": small["sessions"], "mcore_100ms": a, "mcore_200ms": b,
                     "ratio": round(b / a, 2) if a else None})
    return rows


def _floor_section(steps: list[dict[str, Any]], chunk_rows: list[dict[str, Any]]) -> list[str]:
    """What a bare gRPC relay costs (bench.grpc_floor) beside session_svc, per N."""
    if not steps:
        return []
    rows = [[st.get("via", "plain"), st["sessions"], st["relay_us_per_chunk"],
             st["relay_sessions_per_core"],
             "overloaded" if st.get("session_svc_overloaded") else st.get("session_svc_us_per_chunk", "-"),
             st.get("session_svc_times_the_floor", "-")] for st in steps]
    budget_us = 1e6 / (500 * 20)
    best = {via: min((st for st in steps if st.get("via", "plain") == via),
                     key=lambda st: st["relay_us_per_chunk"], default=None)
            for via in ("plain", "trunk")}

    def said(st: dict[str, Any] | None) -> str:
        return ("not measured" if st is None else f"{st['relay_us_per_chunk']:.0f} us at "
                f"N={st['sessions']} ({st['relay_sessions_per_core']} sessions/core)")
    trunk = best["trunk"]
    verdict = (
        "" if trunk is None else
        "The trunk relay alone fits in that budget; session_svc's own work is the rest of the gap."
        if trunk["relay_us_per_chunk"] <= budget_us else
        "Even on trunks the relay alone costs more than that: what is left is grpc.aio's and "
        "asyncio's cost per event, not the frames (a compiled forwarder, or a process per core "
        "with SO_REUSEPORT, are the ways on).")
    return [
        "## The floor under session_svc (bench.grpc_floor)",
        "",
        "session_svc reads every 100 ms chunk from the gateway and writes it to stt_svc. A "
        "bare grpc.aio relay doing only that, at the same N on the same machine, with a gRPC "
        "stream per call (plain) and with the calls as frames on trunks (dragoman.mux, how the "
        "mesh runs by default):",
        "",
        "```",
        table(["via", "N", "relay us/chunk", "relay sessions/core", "session_svc us/chunk",
               "session_svc / relay"], rows),
        "```",
        "",
        f"500 sessions per core means at most {budget_us:.0f} us of CPU per chunk "
        f"(20 chunks/s per session). The plain relay's best here is {said(best['plain'])}; "
        f"on trunks, {said(trunk)}. {verdict}",
        "",
        *([
            "Halving the messages (200 ms of audio each, `bench.load --chunk-ms 200`) makes "
            "session_svc's CPU per session "
            + ", ".join(f"{r['ratio']:.2f}x that with 100 ms at N={r['sessions']} "
                        f"({r['mcore_200ms']} vs {r['mcore_100ms']} mcore)" for r in chunk_rows)
            + ", and adds up to 100 ms to endpointing."
            + (" The number of messages no longer sets session_svc's cost: its work per "
               "utterance and per event does." if all(r["ratio"] > 0.9 for r in chunk_rows)
               else ""), ""]
          if chunk_rows else []),
    ]


def _load_machine(m: dict[str, Any]) -> str:
    """The load runs' machine, with how fast its cores were then (bench.probe)."""
    runs = m.get("load_machines") or {}
    cores = {r["cpu_count"] for r in runs.values() if r.get("cpu_count")}
    probes = [(f"{name}.json", r) for name, r in runs.items()
              if r.get("cpu_probe_ms") and r.get("cpu_probe_all_cores_ms")]
    what = f"{cores.pop()}-core machine" if len(cores) == 1 else "machine"
    if not probes:
        return what
    runs_read = "; ".join(
        f"{file} {r['cpu_probe_ms']} ms on one core, {r['cpu_probe_all_cores_ms']} ms each "
        "with every core busy" for file, r in probes)
    return (f"{what} (CPU probe, bench.probe, right after each run: {runs_read}; the CPU "
            "figures below grow with the probe on a slower or busier host)")


def _stt_assumption(m: dict[str, Any]) -> list[str]:
    a, t, s, p = m["assumptions"], m["traffic"], m["services"], m.get("stt_proxies")
    fixed = (f"a partial every {a['partial_interval_s']} s plus the final, "
             f"{t['stt_decodes_per_utterance']} decodes an utterance, each a full 30 s "
             f"decode: {t['stt_decodes_per_s']:.0f} decodes/s")
    if not p or "decode_equivalents_per_speech_s" not in p:
        return [f"- STT (fixed assumption, no cost proxies in stt.json): {fixed}."]
    r, eq = p["per_speech_s"], p["decode_equivalents_per_speech_s"]

    def kind(k: str) -> str:
        return (f"{k}s {r['decodes'][k]:.2f} decodes, {r['encoder_s'][k]:.2f} s of encoder audio "
                f"and {r['decoder_tokens'][k]:.1f} decoder tokens ({eq[k]:.3f} decodes' worth)")
    return [
        f"- STT's GPU work is measured on the CPU, not assumed: bench.stt_bench's cost proxies "
        f"({p['file']}: stt_svc's dragoman_stt_*_total counters over {p['speech_s']} s of speech in "
        f"{p['utterances']} utterances of {', '.join(p['languages'])}). Per second of speech, "
        f"{kind('partial')}; {kind('final')}. A gpu.json decode is a 30 s window and 40 tokens, "
        f"the encoder {p['encoder_share']:.0%} of it ({p['encoder_share_from']}); so "
        f"{t.get('stt_decode_equivalents_per_s', 0):.0f} decodes' worth a second for the "
        "target.",
        f"- The fixed assumption this replaces ({fixed}) would need "
        f"{s['stt'].get('gpus_fixed_assumption')} STT GPUs.",
    ]


def _cost_section(m: dict[str, Any]) -> list[str]:
    c = m.get("cost")
    if not c:
        return []
    measured = str(c.get("gpus_measured_on") or "")
    same = [r for r in c["rows"] if r["gpu"] in measured or r["gpu"] == "H100"]
    ref = next((r for r in same if r["gpu"] in measured), same[0] if same else None)
    rows = []
    for r in c["rows"]:
        if r in same:
            rows.append([r["gpu"], r["instance"], r["on_demand_usd_per_gpu_hour"],
                         r["spot_usd_per_gpu_hour"], r["on_demand_usd_per_month"],
                         r["spot_usd_per_month"] or "-", "-"])
        else:
            share = (r["on_demand_usd_per_gpu_hour"] / ref["on_demand_usd_per_gpu_hour"]
                     if ref else None)
            rows.append([r["gpu"], r["instance"], r["on_demand_usd_per_gpu_hour"],
                         r["spot_usd_per_gpu_hour"], "-", "-",
                         f"{share:.0%}" if share is not None else "-"])
    seed = c["seed_usd_per_month"]
    lo, hi = c["seed_optimised_usd_per_month"]
    lines = [
        "## Cost per month (GPUs only)",
        "",
        f"{m['total_gpus']} GPUs for 24 h a day, at the prices in bench/prices.toml (list price "
        f"as of {c['as_of']}: {c['source']}):",
        "",
        "```",
        table(["GPU", "instance", "on-demand $/GPU-h", "spot $/GPU-h", "on-demand $/month",
               "spot $/month", "break-even throughput"], rows),
        "```",
        "",
        f"- The GPU count comes from gpu.json on the {measured or 'unknown card'}; an H100 has "
        "the same compute (less memory bandwidth) and is priced at the same count. The smaller "
        "cards were not measured: their last column is the share of an "
        f"{ref['gpu'] if ref else 'H200'}'s throughput one must reach to cost no more than this plan.",
    ]
    if ref:
        lines.append(
            f"- The seed estimated about ${seed:,} a month (${lo:,}-{hi:,} optimised): this plan "
            f"costs {ref['on_demand_usd_per_month'] / seed:.1f}x that on demand"
            + (f", {ref['spot_usd_per_month'] / seed:.1f}x on spot" if ref["spot_usd_per_month"] else "")
            + ".")
    return [*lines, ""]


def document(m: dict[str, Any]) -> str:
    a, t, s = m["assumptions"], m["traffic"], m["services"]
    rows = []
    for name in ("gateway", "session_svc", "stt", "mt", "tts"):
        v = s.get(name, {})
        per = (f"{v['demand_per_s']:.0f}/s need, {v['per_gpu_per_s']}/s per GPU"
               if "per_gpu_per_s" in v else
               f"{v['millicores_per_session']} mcore/session" if "millicores_per_session" in v else "")
        rows.append([name, v.get("replicas") if v.get("replicas") is not None else "-",
                     v.get("gpus") if v.get("gpus") is not None else "-", per, v.get("source", "")])
    hpa_rows = [[k, v["minReplicas"], v["maxReplicas"],
                 v["metric"] + (f"; {v['extra_metric']}" if "extra_metric" in v else "")]
                for k, v in m["hpa"].items()]
    lat = m.get("latency") or {}
    lines = [
        "# Capacity model (generated by `python -m bench.capacity`; do not edit)",
        "",
        f"Generated {m['machine']['time']} from bench/results: "
        + ", ".join(f"{k}.json {'yes' if v else 'absent'}" for k, v in m["inputs"].items()) + ".",
        "",
        "## Assumptions",
        "",
        f"- {a['sessions']} concurrent two-party sessions: {t['speakers']} microphones streaming "
        f"100 ms chunks ({t['audio_chunks_per_s_in']} chunks/s into the gateway).",
        f"- Each participant speaks {a['talk_ratio']:.0%} of the time in utterances of "
        f"{a['utterance_s']} s: {t['speech_seconds_per_s']:.0f} s of speech per second, "
        f"{t['utterances_per_s']:.0f} utterances/s.",
        *_stt_assumption(m),
        f"- One MT sentence per utterance ({t['mt_sentences_per_s']:.0f}/s); translated speech lasts "
        f"as long as the original ({t['tts_audio_seconds_per_s']:.0f} s of audio to synthesise per s).",
        f"- GPUs planned at {a['gpu_utilisation']:.0%} of the throughput measured at batch "
        f"{a['stt_batch']} (gpu.json); CPU services at {a['cpu_utilisation']:.0%} CPU, "
        f"{a['pod_cores']} core(s) per gateway and session_svc pod (one process, one event loop).",
        "- GPU figures come from bench/gpu_proxy.py: the production architectures with random "
        "weights and fixed decode lengths, so compute is real and quality is not measured.",
        "- Gateway and session_svc figures come from bench.load on a shared "
        f"{_load_machine(m)} with "
        "calibrated fake model services: CPU time per session at the largest N within the "
        "50 ms p99 goal, else the largest N that still delivered every utterance. session_svc "
        "is measured alone where load_session_svc.json exists (`bench.load --session-svc`: "
        "the load generator calls it over trunks as gateways do). Client clocks are spread "
        "over the chunk period, as real microphones are. The load generator and other work "
        "shared the cores, so latency there is pessimistic; CPU per session is the planning "
        "figure, and the replicas assume each pod gets its cores to itself.",
        "",
        "## Replicas for the target",
        "",
        "```",
        table(["service", "replicas", "GPUs", "demand / capacity", "from"], rows),
        "```",
        "",
        f"Total GPUs: {m['total_gpus'] if m['total_gpus'] is not None else 'unknown (no gpu.json)'}.",
        "",
        *([f"With partial decodes off (finals only) STT would need "
           f"{s['stt_finals_only']['gpus']} GPUs instead of {s['stt']['gpus']}.", ""]
          if s.get("stt_finals_only") else []),
        *_cost_section(m),
        f"MT on CPU instead (Bergamot/Apertium): {s['mt_cpu_alternative']['cores']} cores "
        f"({s['mt_cpu_alternative']['sentences_per_s_per_core']} sentences/s per core, "
        f"{s['mt_cpu_alternative']['source']}).",
        "",
        *_floor_section(m.get("grpc_floor") or [], m.get("chunk_size") or []),
        "## Autoscaling (HorizontalPodAutoscaler)",
        "",
        "```",
        table(["deployment", "minReplicas", "maxReplicas", "metric"], hpa_rows) if hpa_rows
        else "(needs load.json and gpu.json)",
        "```",
        "",
        "- deploy/k8s/hpa.yaml renders this table as HorizontalPodAutoscalers.",
        *([f"- Each session_svc pod admits at most {s['session_svc']['max_live_sessions']} live "
           "sessions (DRAGOMAN_SESSION_MAX_LIVE_SESSIONS in deploy/k8s/session.yaml: the most one "
           "process carried within 100 ms p99 added latency), and refuses new ones while its "
           "event loop runs over 100 ms late (session.overload_lag_ms): a refused CreateSession "
           "is RESOURCE_EXHAUSTED with a 5 s retry-after, so the sessions a pod holds keep their "
           "latency while the HPA adds pods. Its replicas are sized so that the HPA's target "
           "stays below that limit."]
          if s.get("session_svc", {}).get("max_live_sessions") else []),
        "- session_svc holds live sessions in memory (the gateways route every call about a "
        "session to the replica that created it, recorded in the sessions table): scale on "
        "active sessions per pod as well as CPU, and scale down slowly (10 % a minute after "
        "10 minutes of low load). A pod being removed finishes the utterances in flight "
        "(SIGTERM drain) but its sessions end with it: their state is not replicated.",
        "- Model pods load weights for minutes: keep minReplicas high enough for the daily "
        "trough and scale up early (no stabilisation window). GPU utilisation is a poor "
        "scaling signal for batched decoders (a GPU looks busy long before its batches are "
        "full): scale on the work in flight per pod.",
        "",
        "## Latency this rests on",
        "",
        (f"EN-ES end of speech -> first translated audio on the CPU test machine: p50 "
         f"{lat.get('p50_ms', 0):.0f} ms, p95 {lat.get('p95_ms', 0):.0f} ms (e2e.json)."
         if lat.get("p50_ms") is not None else "No e2e.json yet."),
        *([f"Of that, the silence the listener sits through (not counting time still hearing "
           f"the previous utterance's translation): p50 {wait['p50_ms']:.0f} ms, p95 "
           f"{wait['p95_ms']:.0f} ms."] if (wait := m.get("listener_wait") or {}).get("p50_ms")
          is not None else []),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Assumptions()
    parser.add_argument("--sessions", type=int, default=d.sessions)
    parser.add_argument("--talk-ratio", type=float, default=d.talk_ratio)
    parser.add_argument("--utterance-s", type=float, default=d.utterance_s)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--hpa", type=Path, default=HPA_YAML,
                        help="where the HorizontalPodAutoscalers go (default deploy/k8s/hpa.yaml)")
    parser.add_argument("--prices", type=Path, default=PRICES,
                        help="GPU prices per hour (default bench/prices.toml)")
    args = parser.parse_args(argv)
    a = Assumptions(sessions=args.sessions, talk_ratio=args.talk_ratio, utterance_s=args.utterance_s)
    m = model(a, args.results, args.prices)
    write_result("capacity", m, args.results)
    args.doc.write_text(document(m))
    args.hpa.write_text(hpa_manifests(m["hpa"]))
    sys.stdout.write(document(m) + f"\nwritten to {args.doc}, {args.hpa} and "
                     f"{args.results / 'capacity.json'}\n")


if __name__ == "__main__":
    main()
