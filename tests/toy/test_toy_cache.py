"""The toy warm start is built once when the ranks of a launch need it at the same time, whichever rank
builds it (under a process group transformers' save_pretrained writes weights on rank 0 only)."""

import os
import socket
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    import torch.distributed as dist
    from fastdapo.config import load_config
    from fastdapo.toy import model as toy

    dist.init_process_group("gloo")
    built = []
    real_build = toy._build
    toy._build = lambda cfg, target: (built.append(dist.get_rank()), real_build(cfg, target))
    if dist.get_rank() == 0:  # rank 1 takes the lock first and builds
        import time; time.sleep(1.0)
    cfg = load_config(None, [f"toy.cache_dir={sys.argv[1]}", "toy.sft_steps=5", "toy.hidden_size=16",
                             "toy.layers=1", "toy.heads=2", "run.progress=false"])
    path = toy.toy_model_dir(cfg)
    names = sorted(os.listdir(path))
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path)
    print("RESULT", dist.get_rank(), built, names, flush=True)
    dist.destroy_process_group()
    """
)


def test_ranks_of_a_launch_build_the_warm_start_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path)],
            env={**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(r), "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    results = [line for out in outs for line in out.splitlines() if line.startswith("RESULT")]
    assert sorted(results) == [
        "RESULT 0 [] ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', "
        "'tokenizer_config.json']",
        "RESULT 1 [1] ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', "
        "'tokenizer_config.json']",
    ]
