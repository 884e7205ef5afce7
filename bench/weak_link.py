#!/usr/bin/env python3
"""The weak-link benchmark driver behind bench/weak-link (issue 14). Do not run
it directly: bench/weak-link creates a network namespace whose loopback is
shaped with tc tbf, and starts this inside it, inside its own dbus-run-session.

Three scenarios, each with a fresh broker-connected agent (iv-otad), the cloud
stand-in (iv-ota-cloud) and bench/ota-bench-app as the device app:
  clean: the same image over the same shaped link without faults: the
        baseline measured in the same run (what TCP over tbf achieves);
  weak: the whole image over the shaped link while the cloud cuts every
        response after --cut-seconds and stalls every response for
        --stall-for seconds every --stall-every seconds. Reported: time from
        the offer to FirmwareReady against size / link rate (the ideal), the
        body bytes the server sent beyond the image, the fail reports.
  cap:  [ota] max_download_rate=--cap over the same link, no faults; the
        agent's downloaded count is sampled every second and every 30 s
        window is compared with the cap.
Every process started here is killed by PID on exit (bench.py's Procs).
"""

import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

MIB = 1 << 20


def make_image(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))


def start_agent(bench, device, state_dir, extra=""):
    """Like Bench.start_agent, with extra [ota] keys."""
    os.makedirs(state_dir, exist_ok=True)
    conf = state_dir + ".conf"
    with open(conf, "w") as f:
        f.write("[mqtt]\nport=%d\n[device]\nproduct_id=%s\ndevice_name=%s\n"
                "[ota]\nstate_dir=%s\nrequire_https=false\n%s"
                % (bench.broker_port, B.PRODUCT, device, state_dir, extra))
    log = bench.path("logs", device + "-iv-otad.log")
    proc = bench.procs.spawn("iv-otad", [bench.exe("service/iv-otad"), "--config", conf, "--bus", "session"],
                             stdout=log, env=bench.env)
    B.wait_for(lambda: proc.poll() is None and B.name_has_owner("org.iv.Ota"), 20, "iv-otad on the bus",
               poll=0.05)
    return B.Agent(proc, log)


def fail_reports(cloud):
    out = cloud.stderr.replace(".err", ".out")
    with open(out) as f:
        return sum(1 for line in f if '"state":"fail"' in line)


def count_lines(path, needle):
    with open(path) as f:
        return sum(1 for line in f if needle in line)


def stall_seconds(cloud, start_us, end_us, length):
    """Seconds of the cloud's stalls that fell inside [start_us, end_us]."""
    total = 0.0
    with open(cloud.stderr) as f:
        for m in re.finditer(r"every response stalls for \d+ s \(monotonic (\d+)\)", f.read()):
            t0 = int(m.group(1))
            t1 = t0 + length * 1e6
            total += max(0.0, min(t1, end_us) - max(t0, start_us)) / 1e6
    return total


def run_weak(bench, args, cloud, size, device="weak"):
    fw_dir, state_dir = B.scenario_dirs(bench, device)
    agent = start_agent(bench, device, state_dir)
    try:
        app = bench.start_app(fw_dir)
        ready = app.wait_ready(args.timeout)
        offered = app.first("offered")
        seconds = (ready[0] - offered[0]) / 1e6
        stalled = stall_seconds(cloud, offered[0], ready[0], args.stall_for)
        bench.procs.stop(app.proc)
    finally:
        bench.stop_agent(agent)
    ideal = size / args.link_bytes
    requests = len(cloud.http_lines())
    return {
        "size": size,
        "seconds": round(seconds, 1),
        "ideal_seconds": round(ideal, 1),
        "ratio_to_ideal": round(seconds / ideal, 3),
        "stalled_seconds": round(stalled, 1),
        "floor_seconds": round(ideal + stalled, 1),
        "ratio_to_floor": round(seconds / (ideal + stalled), 3),
        "cuts": count_lines(cloud.stderr, "fault=cut-after-seconds"),
        "requests": requests,
        "server_bytes_beyond_image": cloud.total_sent() - size,
        "fail_reports": fail_reports(cloud),
        "agent_retries": count_lines(agent.log, "interrupted at byte"),
    }


def window_rates(samples, window):
    """Rates over every window of @window seconds between samples (t, bytes)."""
    rates = []
    for i, (t0, b0) in enumerate(samples):
        for t1, b1 in samples[i:]:
            if t1 - t0 >= window:
                rates.append((b1 - b0) / (t1 - t0))
                break
    return rates


def run_cap(bench, args, cloud, size):
    fw_dir, state_dir = B.scenario_dirs(bench, "cap")
    agent = start_agent(bench, "cap", state_dir, "max_download_rate=%d\n" % args.cap)
    samples = []
    try:
        app = bench.start_app(fw_dir)
        start = time.monotonic()
        while not app.first("ready"):
            app.check()
            status = B.get_status("")
            if status.get("state") == "downloading" and "downloaded" in status:
                samples.append((time.monotonic() - start, int(status["downloaded"])))
            time.sleep(1.0)
            if time.monotonic() - start > args.timeout:
                raise B.BenchError("rate cap run did not finish")
        bench.procs.stop(app.proc)
    finally:
        bench.stop_agent(agent)
    # Leave out the first window's start-up (request, first burst) and the tail.
    samples = [s for s in samples if 0 < s[1] < size]
    rates = window_rates(samples, 30.0)
    overall = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0]) if len(samples) > 1 else 0
    return {
        "cap": args.cap,
        "size": size,
        "windows": len(rates),
        "min_ratio": round(min(rates) / args.cap, 3) if rates else None,
        "max_ratio": round(max(rates) / args.cap, 3) if rates else None,
        "overall_ratio": round(overall / args.cap, 3),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=8 * MIB)
    p.add_argument("--link-bytes", type=float, default=32000.0, help="the tbf rate, bytes/s")
    p.add_argument("--cut-seconds", type=int, default=30)
    p.add_argument("--stall-every", type=int, default=60)
    p.add_argument("--stall-for", type=int, default=10)
    p.add_argument("--cap", type=int, default=16000)
    p.add_argument("--cap-size", type=int, default=2500000)
    p.add_argument("--only", default="clean,weak,cap")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()
    args.agent, args.fw_root = None, None
    os.makedirs(os.path.join(args.tmp, "logs"), exist_ok=True)
    with open(os.path.join(args.tmp, "driver.pid"), "w") as f:
        f.write(str(os.getpid()))
    bench = B.Bench(args)
    results = {"link_bytes_per_s": args.link_bytes}
    try:
        bench.start_broker()
        only = args.only.split(",")
        image = bench.path("weak.bin")
        make_image(image, args.size)
        if "clean" in only:
            cloud = bench.start_cloud("clean", image, "--send-buffer=16384")
            bench.wait_clouds()
            results["clean"] = run_weak(bench, args, cloud, args.size, "clean")
            print("clean link:", json.dumps(results["clean"]), flush=True)
            bench.procs.stop(cloud.proc)
            bench.clouds.clear()
        if "weak" in only:
            cloud = bench.start_cloud("weak", image, "--cut-after-seconds=%d" % args.cut_seconds,
                                      "--stall-every=%d" % args.stall_every, "--stall-for=%d" % args.stall_for,
                                      "--send-buffer=16384")
            bench.wait_clouds()
            results["weak"] = run_weak(bench, args, cloud, args.size)
            if "clean" in results:
                results["weak"]["ratio_to_clean"] = round(results["weak"]["seconds"] / results["clean"]["seconds"], 3)
                results["weak"]["ratio_to_clean_plus_stalls"] = round(
                    results["weak"]["seconds"] / (results["clean"]["seconds"] + results["weak"]["stalled_seconds"]), 3)
            print("weak link:", json.dumps(results["weak"]), flush=True)
            bench.procs.stop(cloud.proc)
            bench.clouds.clear()
        if "cap" in only:
            image = bench.path("cap.bin")
            make_image(image, args.cap_size)
            cloud = bench.start_cloud("cap", image, "--send-buffer=16384")
            bench.wait_clouds()
            results["cap"] = run_cap(bench, args, cloud, args.cap_size)
            print("rate cap:", json.dumps(results["cap"]), flush=True)
    finally:
        bench.procs.stop_all()
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
