"""Launch the DDP and FSDP comparisons of 11_distributed (all tree layers, 20 steps) over and over, and report every
launch that runs past its timeout with the ranks' stacks (`launch` puts them in the TimeoutError). This is how the
teardown deadlock that `cleanup` now avoids was found: 1 of 57 DDP launches hung before the fix, 0 of 150 after.
Give it its own TORCH_EXTENSIONS_DIR if another checkout of fff_nb uses the extension cache at the same time (the
two would rebuild each other's extension). Usage: python tools/stress_distributed.py [iterations] [timeout_s]"""
import sys, time
from fff_nb.distributed import compare, reference_runs, tree_layers

if __name__ == '__main__':  # (the ranks import this file as __main__: keep the work under the guard)
    n, timeout_s = int(sys.argv[1]) if len(sys.argv) > 1 else 50, float(sys.argv[2]) if len(sys.argv) > 2 else 120.
    ref = reference_runs(list(tree_layers()), steps=20, batch=16)
    hangs = 0
    for i in range(n):
        t0 = time.time()
        for strategy in ('ddp', 'fsdp'):
            try: compare(strategy, ref, steps=20, batch=16, timeout_s=timeout_s)
            except TimeoutError as e: hangs += 1; print(f"iteration {i} {strategy}: {e}", flush=True)
        print(f"iteration {i}: {time.time() - t0:.1f}s, {hangs} timed out so far", flush=True)
    print(f"{hangs} of {2 * n} launches timed out")
