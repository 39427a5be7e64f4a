#!/usr/bin/env python3
"""Writes fb-like-durations.csv: a synthetic, seeded trace of task durations shaped like the
Facebook Hadoop workload the Mesos paper (NSDI 2011, section 6.1) replayed: most tasks short, a
heavy tail of long ones. No public trace is bundled with agora, so this one is synthetic:
job sizes and durations are drawn from a lognormal body plus a Pareto tail, with a fixed seed,
so the file is reproducible: `python3 sim/traces/gen_fb_like.py > sim/traces/fb-like-durations.csv`.
Columns: job (index), task (index within the job), duration_ms."""
import math
import random

rng = random.Random(20110330)  # NSDI 2011
print("job,task,duration_ms")
job = 0
rows = 0
while rows < 2000:
    tasks = max(1, int(rng.lognormvariate(math.log(12), 1.0)))
    for t in range(tasks):
        if rng.random() < 0.9:
            ms = rng.lognormvariate(math.log(4000), 0.6)  # typical short map task, ~4 s
        else:
            ms = 8000 * rng.paretovariate(1.5)  # the long tail
        print(f"{job},{t},{min(int(ms), 300000)}")
        rows += 1
    job += 1
