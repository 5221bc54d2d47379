"""bench/redis_profile.py's reading of callgrind dumps (the whole-server profile)."""

from __future__ import annotations

from pathlib import Path

from bench.redis_profile import between_breakdown, parse_dump, script_breakdown, script_of

# A dump as callgrind writes one at an EVALSHA's exit (name compression, relative positions).
_EVALSHA_DUMP = """version: 1
creator: callgrind-3.19.0
pid: 4242
cmd: redis-server
part: 3
desc: Trigger: --dump-after=evalShaCommand
positions: line
events: Ir
summary: 10000
ob=(1) /redis-server
fl=(1) scripting.c
fn=(1) evalShaCommand
10 500
cfn=(2) luaSetGlobalArray
calls=2 20
+1 700
cfn=(3) luaV_execute
calls=1 30
+2 8000
fn=(2)
20 700
fn=(3)
30 1500
cfn=(4) luaRedisGenericCommand
calls=3 40
* 6000
cfn=(6) json_decode
calls=1 90
* 300
fn=(6)
90 300
fn=(4)
40 1000
cfn=(5) call
calls=3 50
* 5000
fn=(5)
50 300
cfl=(2) t_stream.c
cfn=(7) xackCommand
calls=1 60
* 1700
cfn=(8) pttlCommand
calls=1 70
* 1000
cfn=(9) xaddCommand
calls=1 80
* 2000
fn=(7)
60 1700
fn=(8)
70 1000
fn=(9)
80 2000
totals: 10000
"""


def test_a_script_dump_is_read_and_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "cg.out.7"
    path.write_text(_EVALSHA_DUMP)
    p, trigger = parse_dump(path)
    assert "evalShaCommand" in trigger
    assert p.total == 10_000
    assert p.self_ir["luaV_execute"] == 1500
    assert p.edges[("call", "xaddCommand")] == 2000
    assert p.edge_calls[("luaRedisGenericCommand", "call")] == 3
    assert p.incl("luaRedisGenericCommand") == 6000
    assert script_of(p) == "record.lua"  # PTTL and XACK: record.lua's
    b = script_breakdown(p)
    assert b["commands run by redis.call (inside call())"] == 5000
    assert b["redis.call's own work (argv objects, lookup, reply to Lua)"] == 1000
    assert b["KEYS/ARGV made Lua strings (luaSetGlobalArray)"] == 700
    assert b["cjson"] == 300
    assert b["  XADD"] == 2000 and b["  XACK"] == 1700 and b["  PTTL"] == 1000
    # every instruction of the dump lands in exactly one of the top rows
    top = [v for k, v in b.items() if k != "total" and not k.startswith("  ")]
    assert sum(top) == b["total"]


def test_the_rest_of_the_server_is_split_by_what_ran_it(tmp_path: Path) -> None:
    path = tmp_path / "cg.out.8"
    path.write_text("""events: Ir
summary: 900
fn=(1) readQueryFromClient
1 100
cfn=(2) processCommand
calls=1 2
1 600
fn=(2)
2 150
cfn=(3) call
calls=1 3
1 450
fn=(3)
3 50
cfn=(4) pingCommand
calls=1 4
1 400
fn=(4)
4 400
fn=(5) serverCron
5 200
""")
    p, _ = parse_dump(path)
    b = between_breakdown(p)
    assert b["reading and parsing requests (readQueryFromClient minus processCommand)"] == 100
    assert b["command dispatch (processCommand minus call: lookup, ACL, checks)"] == 150
    assert b["call() around the command (stats, slowlog, propagation)"] == 50
    assert b["command PING (top level)"] == 400
    assert b["serverCron (hz)"] == 200
