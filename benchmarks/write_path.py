"""Benchmark: the safe-write path at the service layer — propose a booking, confirm it, apply it (no target set).

Usage: python benchmarks/write_path.py [--patients 200] [--bookings 60] [--runs 3] [--data DIR]
Generates a demo practice dated today (its Slots lie in the next three weeks) unless --data names one, then
per run books `bookings` free Slots through `Gateway.book_appointment` (validation, policy, risk, signed
proposal, audit record) and confirms each with a confirmation token (`confirm_proposal`: token check,
version-checked write of the Appointment and its Slot with the in-transaction overlap check, audit record).
Prints per-step p50/p95 in ms, medians over runs. Each run works on a fresh copy of the data directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_policy import unlimited_policy

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.demo.generator import write_practice
from fhirgate.errors import Conflict
from fhirgate.service.context import RequestContext
from fhirgate.store.factory import open_store
from fhirgate.writes.calendar import practitioner_slots

STAFF = Principal(sub="bench", issuer="urn:bench", scopes=ScopeSet.parse("user/*.cruds"), client_id="bench")


def _practice(folder: Path, patients: int) -> DataDir:
    data = DataDir(folder).ensure()
    store = open_store(data)
    try:
        write_practice(store, patients=patients, seed=7, today=dt.date.today())
    finally:
        store.close()
    return data


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_once(source: Path, bookings: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "data"
        shutil.copytree(source, target)
        gateway = build_gateway(DataDir(target), key=None, policy=unlimited_policy().with_writes_enabled())
        try:
            store = gateway.store
            patients = sorted(s.id for s in store.iter_type("Patient"))
            optouts = gateway.governance.consents().patients_opted_out(dt.date.today())
            patients = [p for p in patients if p not in optouts]
            now = dt.datetime.now(dt.UTC)
            doctors = sorted(
                str(a["reference"]).removeprefix("Practitioner/")
                for s in store.iter_type("Schedule")
                for a in s.body.get("actor") or []
                if str(a.get("reference", "")).startswith("Practitioner/")
            )
            free: list[tuple[str, str]] = []
            for doctor in doctors:
                for slot in practitioner_slots(
                    store, f"Practitioner/{doctor}", now + dt.timedelta(days=1), now + dt.timedelta(days=20)
                ):
                    if slot.get("status") == "free":
                        free.append((doctor, str(slot["start"])))
            timings: dict[str, list[float]] = {"propose": [], "confirm_and_write": []}
            used: set[tuple[str, str]] = set()
            booked = 0
            for i, (doctor, start) in enumerate(free):
                if booked >= bookings:
                    break
                patient = patients[i % len(patients)]
                if (patient, start) in used:
                    continue
                began = time.perf_counter()
                try:
                    out = gateway.book_appointment(
                        RequestContext(STAFF, name="book_appointment"),
                        patient_id=patient,
                        practitioner_id=doctor,
                        start=start,
                        minutes=30,
                    )
                except Conflict:  # the patient is already busy at that time: skip the slot
                    continue
                timings["propose"].append((time.perf_counter() - began) * 1000)
                pid = out["proposal"]["id"]
                token = gateway.confirmation_token(STAFF, pid)
                assert token is not None
                began = time.perf_counter()
                done = gateway.confirm_proposal(
                    RequestContext(STAFF, name="book_appointment"), "book_appointment", pid, token
                )
                timings["confirm_and_write"].append((time.perf_counter() - began) * 1000)
                assert done["proposal"]["status"] == "applied"
                used.add((patient, start))
                booked += 1
            return timings
        finally:
            gateway.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, help="an existing data directory generated with today's date")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.data or _practice(Path(tmp) / "practice", args.patients).path
        results: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for step, values in run_once(source, args.bookings).items():
                results.setdefault(step, []).append((_pct(values, 0.5), _pct(values, 0.95)))
    print(f"write path, {args.bookings} bookings x {args.runs} runs (median over runs):")
    for step, pairs in results.items():
        p50 = statistics.median(p for p, _ in pairs)
        p95 = statistics.median(p for _, p in pairs)
        print(f"  {step:<18} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")


if __name__ == "__main__":
    main()
