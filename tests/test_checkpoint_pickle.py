"""The symbolic pickle machine: what a pickle calls, found without running it, for every protocol
and every way of naming a global."""
from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle
import random
import struct

import pytest

from cvdoctor.checkpoint.pickle_vm import execute_bytes
from cvdoctor.checkpoint.scan import Scan, judge


def verdict(data: bytes):
    scan = Scan()
    run = scan.replay(io.BytesIO(data), "p")
    out = judge(scan)
    scan.close()
    return out, run


def categories(data: bytes) -> dict[str, str]:
    out, _ = verdict(data)
    return {x["global"] or x["uses"][0]: x["category"] for x in out["findings"]}


def u(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


class Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_names_the_call(protocol):
    cats = categories(pickle.dumps(Reduce(os.system, ("true",)), protocol=protocol))
    assert cats.get("posix.system") == "denied" or cats.get("os.system") == "denied"


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_in_every_protocol_is_data(protocol):
    value = collections.OrderedDict(a=[1, 2.5, "x", b"y", None, True], b={1, 2}, c=(1 + 2j,),
                                    d=frozenset({3}), e=bytearray(b"z"))
    out, run = verdict(pickle.dumps(value, protocol=protocol))
    assert out["verdict"] == "data", out["findings"]
    assert run.problem is None


def test_python2_names_are_mapped_like_the_unpickler_does():
    assert categories(b"c__builtin__\nset\n(]tR.") == {"builtins.set": "data"}
    # protocol >= 3: no mapping, the name stays what it says
    cats = categories(b"\x80\x03c__builtin__\nset\n(]tR.")
    assert cats == {"__builtin__.set": "denied"}


def test_names_from_text_opcodes_and_the_memo():
    assert categories(b"S'os'\nS'system'\n\x93S'x'\n\x85R.")["os.system"] == "denied"
    data = b"Vos\np2\n0Vsystem\np3\n0g2\ng3\n\x93(Vx\ntR."
    assert categories(data)["os.system"] == "denied"
    data = b"\x80\x04" + u("os") + b"\x94" + u("system") + b"\x94h\x00h\x01\x93" + u("x") + b"\x85R."
    assert categories(data)["os.system"] == "denied"


def test_dup_and_pop_mark_are_followed():
    data = b"\x80\x04" + u("builtins") + b"2" + b"0" + u("eval") + b"\x93" + u("1") + b"\x85R."
    assert categories(data)["builtins.eval"] == "denied"
    data = b"\x80\x04(" + u("junk") + u("junk") + b"1" + u("os") + u("system") + b"\x93" + u("x") + b"\x85R."
    assert categories(data)["os.system"] == "denied"


def test_a_global_referenced_but_not_called_is_judged_by_where_it_lives():
    import torch.nn.functional as F  # noqa: F401 - only its name is pickled

    cats = categories(b"\x80\x02ctorch.nn.functional\nrelu\n.")
    assert cats == {"torch.nn.functional.relu": "library"}
    cats = categories(b"\x80\x02ctorch.nn.functional\nrelu\n)R.")
    assert cats == {"torch.nn.functional.relu": "denied"}  # a call of a function


def test_one_vouched_call_does_not_cover_another():
    ok = b"\x80\x02cbuiltins\ntype\nN\x85R"
    assert categories(ok + b".") == {"builtins.type": "data"}
    bad = ok + b"0cbuiltins\ntype\nX\x01\x00\x00\x00X)}\x87R."
    assert categories(bad)["builtins.type"] == "denied"


def test_bound_methods_of_built_objects_pass_but_getattr_on_a_global_fails():
    class Net:
        def go(self):
            return 1

    net = Net()
    # getattr(<instance>, 'go') x 70, then getattr(os, 'system'): the last one must still count
    obj = b"\x80\x02c__main__\nNet\n)\x81q\x00"
    calls = b"".join(b"cbuiltins\ngetattr\nh\x00X\x02\x00\x00\x00go\x86R0" for _ in range(70))
    assert categories(obj + calls + b"N.")["builtins.getattr"] == "library"
    bad = obj + calls + b"cbuiltins\ngetattr\ncos\npath\nX\x04\x00\x00\x00join\x86R."
    assert categories(bad)["builtins.getattr"] == "denied"
    del net


def test_calling_a_computed_value_is_denied_even_with_data_globals():
    data = b"\x80\x02ccollections\nOrderedDict\n)R)R."  # OrderedDict()()
    out, _ = verdict(data)
    assert out["verdict"] == "denied"
    assert any("a value built while loading" in x["reason"] for x in out["findings"])


def test_build_and_setitems_on_a_global_are_denied():
    out, _ = verdict(b"\x80\x02ccollections\nOrderedDict\nN}X\x01\x00\x00\x00aK\x01s\x86b.")
    assert out["verdict"] == "denied"
    assert any("monkey-patching" in x["reason"] for x in out["findings"])
    out, _ = verdict(b"\x80\x02ccollections\nOrderedDict\nX\x01\x00\x00\x00aK\x01s.")
    assert out["verdict"] == "denied"


def test_what_ran_before_a_broken_opcode_still_counts():
    body = pickle.dumps(Reduce(os.system, ("true",)), protocol=2)[:-1] + b"\xff"
    out, run = verdict(body)
    assert run.problem and "invalid load key" in run.problem
    assert out["verdict"] == "denied"


@pytest.mark.parametrize("data,problem", [
    (b"\x80\x02]q\x00(K\x01", "ends before its STOP"),
    (b"\x80\x06N.", "unsupported pickle protocol"),
    (b"\x80\x02h\x05.", "memo value not found"),
    (b"\x80\x05\x97.", "out-of-band"),
    (b"\x80\x02B\xff\xff\xff\x7f", "ends before its STOP"),  # claims 2 GB, has none
    (b"", "no pickle data"),
    (b"\x80\x02cos\nsys\xfftem\n.", "not UTF-8"),
])
def test_broken_streams_say_why(data, problem):
    _, run = verdict(data)
    assert problem in run.problem


def test_cycles_and_shared_references_do_not_blow_up():
    a: list = []
    a.append(a)
    d = {"x": a}
    d["self"] = d
    out, run = verdict(pickle.dumps(d, protocol=4))
    assert run.problem is None and out["verdict"] == "data"
    # "billion laughs": nested references to the same list stay shared, nothing expands
    laugh = b"\x80\x04]\x94" + b"".join(b"(h%c" % i + b"h%c" % i + b"l\x94" for i in range(0, 40)) + b"."
    _, run = verdict(laugh)
    assert run.problem is None


def test_unresolvable_and_extension_names_are_denied():
    cats = categories(b"\x80\x02\x82\x05.")
    assert list(cats.values()) == ["denied"]
    cats = categories(b"\x80\x04K\x01" + u("x") + b"\x93.")
    assert list(cats.values()) == ["denied"]


def test_random_bytes_never_crash_or_hang():
    rng = random.Random(0)
    seeds = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(300)]
    seeds += [b"\x80\x02" + s for s in seeds[:100]]
    for data in seeds:
        run = execute_bytes(data)
        assert run.problem or run.stopped_at is not None


def test_large_byte_strings_are_not_kept():
    blob = os.urandom(1 << 20)
    data = pickle.dumps({"raw": blob}, protocol=4)
    run = execute_bytes(data)
    raw = run.result.items[0][1]
    assert raw.length == 1 << 20 and raw.spool is None and len(raw.head) == 64


def test_path_objects_are_a_library_class_not_a_call():
    cats = categories(pickle.dumps({"p": pathlib.PurePosixPath("a/b")}, protocol=2))
    assert cats == {"pathlib.PurePosixPath": "library"}
