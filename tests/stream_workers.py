"""A worker process for tests/test_streams.py (a module, so a spawned worker can import it): the real
worker_main with run_item wrapped so one video hangs for ever (`hang*` files) and every other video's
first attempt stops after its first chunk until the process is killed. Makes a timeout with two
videos in flight certain without timing anything."""

import threading

import fervideo.batch.local as local
import fervideo.batch.work as work


def worker_main_with_a_hang(conn, settings) -> None:
    real_run_item = work.run_item

    def run_item(processor, index, item, **options):
        if item.path.name.startswith("hang"):
            threading.Event().wait()
        marker = item.path.with_suffix(".first-attempt")
        if not marker.exists():
            marker.touch()
            progress = options["progress"]

            def stall_after_the_first_chunk(done: int, planned: int) -> None:
                progress(done, planned)
                threading.Event().wait()

            options["progress"] = stall_after_the_first_chunk
        return real_run_item(processor, index, item, **options)

    work.run_item = run_item
    local.worker_main(conn, settings)
