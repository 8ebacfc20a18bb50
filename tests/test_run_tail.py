"""cvdoctor.run.tail: what `cvdoctor run` keeps of the output stays bounded, and what it counts
on the way (symptoms, line numbers, earlier tracebacks) survives chunk boundaries."""
from __future__ import annotations

from cvdoctor.run.tail import OutputTail

LINE = b"Epoch 3:  41%|####      | 1630/4000 [05:12<07:33, 5.2it/s, loss=0.412]\r\n"


def feed_in_chunks(tail: OutputTail, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        tail.feed(data[i:i + size])


def test_memory_stays_bounded_on_a_long_log():
    tail = OutputTail(tail=64 * 1024)
    block = LINE * 1000
    for _ in range(200):  # about 14 MB
        tail.feed(block)
    assert tail.total == 200 * len(block)
    assert len(tail.buf) <= 2 * 64 * 1024 + len(block)
    assert tail.lines == 200 * 1000
    assert tail.text().endswith(LINE.decode())


def test_symptoms_are_found_across_chunk_boundaries_with_their_line_numbers():
    log = b"".join([LINE] * 10 + [b"epoch 10: train_loss=nan val_loss=nan\n"] + [LINE] * 5
                   + [b"epoch 11: train_loss=nan\n", b"AMP: checks failed \xe2\x9d\x8c. ...\n"])
    for size in (1, 7, 64, len(log)):
        tail = OutputTail()
        feed_in_chunks(tail, log, size)
        found = {s.kind.recipe: s for s in tail.symptom_list()}
        assert set(found) == {"nan-loss", "ultralytics-amp-check"}, size
        nan = found["nan-loss"]
        assert (nan.count, nan.first_line_number) == (2, 11), size
        assert nan.first_line == "epoch 10: train_loss=nan val_loss=nan"
        assert found["ultralytics-amp-check"].first_line_number == 18


def test_words_that_merely_contain_nan_are_not_symptoms():
    tail = OutputTail()
    tail.feed(b"model: yolov8nano, dataset: finance, nanoseconds=12, NaN checks: on\n"
              b"loss=0.5 nan_policy=omit\n")
    assert tail.symptom_list() == []


def test_the_first_and_latest_tracebacks_survive_eviction():
    tail = OutputTail(tail=4096)
    first = b"Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: first\n"
    later = b"Traceback (most recent call last):\n  File \"b.py\", line 2\nKeyError: 'later'\n"
    tail.feed(first)
    for _ in range(200):
        tail.feed(LINE)
    tail.feed(later)
    for _ in range(200):
        tail.feed(LINE)
    text = tail.text()
    assert "ValueError: first" in text and "KeyError: 'later'" in text
    assert text.index("ValueError: first") < text.index("KeyError: 'later'")
    assert len(text) < 3 * 4096 + 2 * len(later) + 1024


def test_a_dataloader_worker_death_and_torchrun_restarts_are_symptoms():
    tail = OutputTail()
    tail.feed(b"[W] DataLoader worker (pid 4121) is killed by signal: Killed.\n"
              b"INFO:torch.distributed.elastic.agent.server.api:[default] Worker group FAILED. "
              b"3/3 attempts left; will restart worker group\n"
              b"[default] Restarting worker group\n")
    assert [s.kind.recipe for s in tail.symptom_list()] == ["dataloader-worker-crash",
                                                            "torchrun-child-failed"]
