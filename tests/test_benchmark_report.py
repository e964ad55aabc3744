"""benchmarks/report.py turns the result JSONs into the README's tables (no torch, no benchmark run)."""

import json

import pytest

from benchmarks import report


def _quality(tmp_path, slug, dataset, metric, table):
    (tmp_path / f"quality_{slug}.json").write_text(json.dumps(
        {"dataset": dataset, "metric": metric, "steps": 30000, "batch_size": 256, "episodes": 10, "table": table}))


def test_quality_summary_has_one_column_per_dataset_and_std_only_with_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    _quality(tmp_path, "a", "bench/hopper/medium-v0", "normalized score",
             {"AlignIQL": {"mean": 74.64, "std": 3.25, "seeds": 3},
              "d3rlpy IQL": {"mean": 81.5, "std": 0.0, "seeds": 3},
              "new rule": {"mean": 80.0, "std": 0.0, "seeds": 1}})
    _quality(tmp_path, "b", "bench/pointmaze/medium-v0", "success rate (%)",
             {"AlignIQL": {"mean": 70.0, "std": 0.0, "seeds": 1}})
    lines = report.quality()
    text = "\n".join(lines)
    assert "| method | hopper/medium-v0 | pointmaze/medium-v0 (success %) |" in lines
    assert "| AlignIQL | 74.6 ± 3.2 | 70.0 |" in lines
    assert "| d3rlpy IQL | 81.5 ± 0.0 | – |" in lines  # a method not run on a dataset is marked, not dropped
    assert "| new rule | 80.0 (1 seed) | – |" in lines  # fewer seeds than the column's others: said
    assert "hopper/medium-v0 3, pointmaze/medium-v0 1 (mean ± sample std over seeds)" in text
    assert "30000 gradient steps at batch 256" in text


def test_quality_provenance_groups_seeds_by_commit_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    zen3 = {"cpu": "AMD EPYC", "cpu_features": {"avx2": True, "avx512": False, "avx512_bf16": False}}
    spr = {"cpu": "Intel Xeon", "cpu_features": {"avx512": True, "avx512_bf16": True, "amx_tile": True}}
    seeds = {"0": {"ours": {"git_sha": "a" * 40, "held_out": 5}},  # trained before the CPU was recorded
             "1": {"ours": {"git_sha": "b" * 40, "held_out": 5, "machine": zen3}},
             "2": {"ours": {"git_sha": "b" * 40, "held_out": 5, "machine": spr}},
             "3": {"d3rlpy": {}}}
    (tmp_path / "quality_h.json").write_text(json.dumps(
        {"dataset": "bench/hopper/medium-v0", "metric": "normalized score", "steps": 30000, "batch_size": 256,
         "episodes": 10, "table": {"AlignIQL": {"mean": 1.0, "std": 0.0, "seeds": 3}}, "per_seed": seeds}))
    text = "\n".join(report.quality())
    assert ("Trained by: commit aaaaaaa (CPU not recorded): hopper/medium-v0 0; commit bbbbbbb on AMD EPYC "
            "(AVX2 only): hopper/medium-v0 1; commit bbbbbbb on Intel Xeon (AMX): hopper/medium-v0 2.") in text


def test_no_results_prints_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.quality() == [] and report.latency() == [] and report.speed() == []


def test_cpu_latency_on_a_gpu_machine_names_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    machine = {"cpu": "AMD EPYC", "gpu": "NVIDIA H200", "date": "2026-11-21 10:00 UTC"}
    for device in ("cpu", "cuda"):
        (tmp_path / f"latency_{device}.json").write_text(json.dumps(
            {"device": device, "machine": machine, "matmul_peak_flops": {"fp32": 1.8e11}, "rows": []}))
    text = "\n".join(report.latency())
    assert "`latency_cpu.json`: `act()` on cpu (AMD EPYC," in text
    assert "`latency_cuda.json`: `act()` on cuda (NVIDIA H200," in text


def test_extraction_table_lists_every_setting_per_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "extraction_a.json").write_text(json.dumps(
        {"dataset": "bench/hopper/medium-v0", "metric": "normalized score", "episodes": 10,
         "table": {"AlignIQL argmax, N=16": {"mean": 70.0, "std": 1.0, "seeds": 2},
                   "IDQL argmax Q, N=16": {"mean": 80.25, "std": 0.5, "seeds": 2}}}))
    lines = report.extraction()
    assert "| method | hopper/medium-v0 |" in lines
    assert "| AlignIQL argmax, N=16 | 70.0 ± 1.0 |" in lines
    assert "| IDQL argmax Q, N=16 | 80.2 ± 0.5 |" in lines
    assert "10 episodes per seed" in lines[0]
    assert not any("Effective number" in line for line in lines)  # no diagnostics, no spread table


def test_softmax_spread_table_averages_seeds_and_marks_missing_temperatures(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)

    def diag(ess_aligniql, spread, temps=("1", "0.01")):
        return {"num_samples": 64, "states": 64, "rules": {
            "aligniql": {"q_spread": spread, "log_weight_std": 0.01, "softmax_ess": dict(zip(temps, ess_aligniql))},
            "idql": {"q_spread": spread, "log_weight_std": 0.03, "softmax_ess": dict(zip(temps, (60.0, 9.0)))}}}

    (tmp_path / "extraction_a.json").write_text(json.dumps(
        {"dataset": "bench/hopper/medium-v0", "metric": "normalized score", "episodes": 10,
         "table": {"AlignIQL argmax, N=16": {"mean": 70.0, "std": 1.0, "seeds": 2}},
         "per_seed": {"0": {"diagnostics": diag((64.0, 30.0), 0.1)}, "1": {"diagnostics": diag((62.0, 40.0), 0.2)},
                      "2": {"AlignIQL argmax, N=16": {"score": 70.0}}}}))
    (tmp_path / "extraction_b.json").write_text(json.dumps(
        {"dataset": "bench/walker2d/medium-v0", "metric": "normalized score", "episodes": 10, "table": {},
         "per_seed": {"0": {"diagnostics": diag((50.0,), 0.4, temps=("1",))}}}))
    lines = report.extraction()
    assert "| dataset | rule | Q spread | T=1 | T=0.01 |" in lines
    assert "| hopper/medium-v0 | AlignIQL | 0.150 | 63.0 | 35.0 |" in lines
    assert "| hopper/medium-v0 | IDQL (Q) | 0.150 | 60.0 | 9.0 |" in lines
    assert "| walker2d/medium-v0 | AlignIQL | 0.400 | 50.0 | – |" in lines
    assert not any("AlignIQL-hard" in line for line in lines)  # a checkpoint without multipliers has no row


def test_extraction_settings_reuse_only_the_same_quality_evaluation(tmp_path):
    from benchmarks import extraction
    from benchmarks.quality import EVAL_SEED

    grid = extraction.settings([16, 64], [1.0])
    defaults = {"extraction": "aligniql", "num_samples": 64, "selection": "argmax", "temperature": 1.0, "eta": 1.0}
    final = {name: {"score": i, "episodes": 10, "seed": EVAL_SEED} for i, name in enumerate(
        ["AlignIQL", "AlignIQL-hard", "IDQL (argmax Q)", "Gaussian (AWR)", "Diffusion BC (N=1)"])}
    run = tmp_path / "seed0"
    seed = {"ours": {"final": final, "run_dir": str(run)}}
    pick = {name: extraction.reusable(seed, run, ov, 10, defaults) for name, ov in grid.items()}
    assert pick["AlignIQL argmax, N=64"]["score"] == 0
    assert pick["AlignIQL-hard softmax T=1, N=64"]["score"] == 1
    assert pick["IDQL argmax Q, N=64"]["score"] == 2
    assert pick["Diffusion BC (N=1)"]["score"] == 4
    assert pick["AlignIQL argmax, N=16"] is None and pick["IDQL expectile softmax, N=64"] is None
    assert pick["AlignIQL-hard argmax, N=64"] is None  # the official rule; the quality row sampled instead
    # another checkpoint, episode count or episode seed: evaluated anew, not reused
    same = grid["AlignIQL argmax, N=64"]
    assert extraction.reusable(seed, tmp_path / "seed1", same, 10, defaults) is None
    assert extraction.reusable(seed, run, same, 20, defaults) is None
    # an agent whose default selection is softmax: the quality rows name their selection, so the argmax row
    # serves an argmax setting, and a setting that leaves the selection to the agent (softmax) is evaluated anew
    soft = defaults | {"selection": "softmax"}
    assert extraction.reusable(seed, run, same, 10, soft)["score"] == 0
    assert extraction.reusable(seed, run, {"extraction": "aligniql"}, 10, soft) is None
    # another extraction resets the selection as act() does: IDQL's argmax row serves {"extraction": "idql"}
    assert extraction.reusable(seed, run, {"extraction": "idql"}, 10, soft)["score"] == 2
    final["AlignIQL"]["seed"] = 0
    assert extraction.reusable(seed, run, same, 10, defaults) is None


def test_write_readme_replaces_only_the_marked_span(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\n\nold table\n\n{report.END}\n\nhand-written notes\n")
    report.write_readme(readme, "#### Quality\n\n| new |\n")
    expected = f"intro\n{report.BEGIN}\n\n#### Quality\n\n| new |\n\n{report.END}\n\nhand-written notes\n"
    assert readme.read_text() == expected
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="needs exactly one"):
        report.write_readme(readme, "x")


def test_readme_tables_match_the_committed_results():
    """The README's numbers are the result files' numbers: rerun `report.py --write-readme` after a benchmark."""
    text = report.README.read_text()
    generated = text.split(report.BEGIN)[1].split(report.END)[0].strip()
    assert generated == report.render(report.LEVEL).strip()
    assert report.README.parent.name == "benchmarks"  # the lab notes live there, not in the top-level README
    summary = report.TOP_README.read_text().split(report.TOP_BEGIN)[1].split(report.TOP_END)[0].strip()
    assert summary == "\n".join(report.headline()).strip()  # and README.md's summary is made from the same files


def test_readme_summary_marks_each_datasets_default_rule_and_reads_the_dev_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    rules = {"AlignIQL": {"mean": 70.0, "std": 2.0, "seeds": 3},
             "IDQL (argmax Q)": {"mean": 80.0, "std": 1.0, "seeds": 3},
             "IQL-AWR softmax (T = 1/awr_beta)": {"mean": 75.0, "std": 3.0, "seeds": 3},
             "d3rlpy IQL": {"mean": 82.0, "std": 0.5, "seeds": 3}}
    _quality(tmp_path, "h", "bench/hopper/medium-v0", "normalized score", rules)
    _quality(tmp_path, "a", "bench/antmaze/umaze-v0", "success rate (%)", {"AlignIQL": {"mean": 90.0, "std": 0.0,
                                                                                          "seeds": 1}})
    _quality(tmp_path, "h_noln", "bench/hopper/medium-v0", "normalized score", rules)  # a tagged variant: left out
    (tmp_path / "quality_h_noln.json").write_text(json.dumps({**json.loads(
        (tmp_path / "quality_h_noln.json").read_text()), "tag": "noln"}))
    (tmp_path / "mixed_dev").mkdir()
    (tmp_path / "mixed_dev" / "mixed_hopper_x_seed0.json").write_text("{}")  # a seed's raw state: not a summary
    (tmp_path / "mixed_dev" / "mixed_hopper_x.json").write_text(json.dumps({"dataset": "mixed/hopper/x", "table": {
        "tau0.7": {"IDQL argmax Q N=64": {"mean": 30.0, "std": 20.0, "seeds": 2},
                   "IDQL softmax Q N=64, T = 1/3": {"mean": 50.0, "std": 0.0, "seeds": 1}},
        "tau0.9": {"IDQL argmax Q N=64": {"mean": 5.0, "std": 0.0, "seeds": 2}},
        "d3rlpy IQL": {"d3rlpy IQL (tau 0.7, AWR actor)": {"mean": 84.0, "std": 2.0, "seeds": 2}}}}))
    lines = report.headline()
    # locomotion acts by IQL's AWR softmax, AntMaze by AlignIQL's rule (training/presets.py), the bold cell says which
    assert "| hopper/medium-v0 | 3 | 70.0 ± 2.0 | 80.0 ± 1.0 | **75.0 ± 3.0** | 82.0 ± 0.5 |" in lines
    assert "| antmaze/umaze-v0 (success %) | 1 | **90.0** | – | – | – |" in lines
    assert "| mixed/hopper/x (dev set) | 2 | – | 30.0 ± 20.0 | **50.0** (1 seed) | 84.0 ± 2.0 |" in lines
    assert sum("hopper/medium-v0" in line for line in lines) == 1
    hopper = "| hopper/medium-v0 | 3 | 70.0 ± 2.0 | 80.0 ± 1.0 | **75.0 ± 3.0** | 82.0 ± 0.5 |"
    assert lines.index(hopper) < lines.index("| antmaze/umaze-v0 (success %) | 1 | **90.0** | – | – | – |")


def test_write_readme_replaces_only_between_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.TOP_BEGIN}\nold\n{report.TOP_END}\nafter\n")
    report.write_readme(readme, "new table", report.TOP_BEGIN, report.TOP_END)
    assert readme.read_text() == f"intro\n{report.TOP_BEGIN}\n\nnew table\n\n{report.TOP_END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs exactly one"):
        report.write_readme(readme, "x", report.TOP_BEGIN, report.TOP_END)


def test_readme_summary_bolds_no_column_for_a_default_it_has_no_column_for(monkeypatch):
    import dataclasses

    assert report.default_column("locomotion") == "IQL-AWR softmax"  # softmax over Q at T = 1 / awr_beta
    sharper = dataclasses.replace(report.PRESETS["locomotion"], extraction="idql", selection="softmax",
                                  temperature=0.1)
    monkeypatch.setitem(report.PRESETS, "locomotion", sharper)
    assert report.default_column("locomotion") is None  # no column holds a softmax over Q at T = 1/10
    greedy = dataclasses.replace(sharper, selection="argmax")
    monkeypatch.setitem(report.PRESETS, "locomotion", greedy)
    assert report.default_column("locomotion") == "argmax Q"
    assert report.default_column("pointmaze") == "IQL-AWR softmax"
    assert report.default_column("antmaze") == "AlignIQL rule"


def test_bc_floor_allows_the_seed_spread_and_needs_two_seeds():
    def r(mean, std, seeds=3):
        return {"mean": mean, "std": std, "seeds": seeds}

    assert report.bc_floor(r(40.9, 5.6), r(46.8, 9.9)) == "ok"  # 5.9 short, inside BC's spread of 9.9
    assert report.bc_floor(r(18.1, 3.1), r(46.8, 9.9)) == "below by 28.7"
    assert report.bc_floor(r(50.0, 0.0), r(40.0, 0.0)) == "ok"  # above BC
    assert report.bc_floor(r(10.0, 0.0, 1), r(40.0, 1.0)) == "n/a"  # one seed: no spread to compare with


def test_targets_check_the_default_rule_of_each_dataset_against_d3rlpy_bc_and_the_best_behaviour(tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    _quality(tmp_path, "h", "bench/hopper/medium-v0", "normalized score",
             {"IDQL (argmax Q)": {"mean": 81.0, "std": 0.1, "seeds": 3},  # not the default: never read
              "IQL-AWR softmax (T = 1/awr_beta)": {"mean": 72.7, "std": 0.1, "seeds": 3},
              "Diffusion BC (N=1)": {"mean": 72.5, "std": 0.1, "seeds": 3},
              "d3rlpy IQL": {"mean": 82.2, "std": 1.0, "seeds": 3}})
    _quality(tmp_path, "w", "bench/walker2d/medium-v0", "normalized score",
             {"IQL-AWR softmax (T = 1/awr_beta)": {"mean": 76.1, "std": 8.5, "seeds": 2},
              "d3rlpy IQL": {"mean": 69.7, "std": 20.6, "seeds": 3}})
    (tmp_path / "mixed_dev").mkdir()
    (tmp_path / "mixed_dev" / "mixed_hopper_x.json").write_text(json.dumps({"dataset": "mixed/hopper/x", "table": {
        "tau0.7": {"IDQL softmax Q N=64, T = 1/3": {"mean": 52.0, "std": 19.0, "seeds": 3},
                   "Diffusion BC (N=1)": {"mean": 7.6, "std": 0.4, "seeds": 3}},
        "d3rlpy IQL": {"d3rlpy IQL (tau 0.7, AWR actor)": {"mean": 63.0, "std": 36.0, "seeds": 3}}}}))
    (tmp_path / "mixed_datasets.json").write_text(json.dumps({"datasets": {
        "mixed/hopper/x": {"best_normalized_return_mean": 65.0},
        "mixed/cheetah/y": {"best_normalized_return_mean": 45.0}}}))
    lines = report.targets()
    assert ("| hopper/medium-v0 | IQL-AWR softmax | 3 | – | 72.7 ± 0.1 | 82.2 ± 1.0 | behind | 72.5 ± 0.1 | ok | – "
            "| – |") in lines
    assert ("| walker2d/medium-v0 | IQL-AWR softmax | 2 | – | 76.1 ± 8.5 | 69.7 ± 20.6 | tie | – | n/a | – | – |"
            in lines)
    assert ("| mixed/hopper/x (dev set) | IQL-AWR softmax | 3 | – | 52.0 ± 19.0 | 63.0 ± 36.0 | tie | 7.6 ± 0.4 | "
            "ok | 65.0 | 80 % |") in lines
    summary = next(line for line in lines if line.startswith("Issue 18"))
    assert "dev sets 1 of 1 with a d3rlpy baseline" in summary and "shared 1 of 2;" in summary
    assert "BC floor held on 2 of 2" in summary  # the dev set and hopper; walker2d has no BC row
    assert "≥ 60 % of the best behaviour on 1 of 1 dev sets, ≥ 80 % on 1 of 1" in summary
    assert "Built but not evaluated yet: `mixed/cheetah/y`." in summary
    assert not any(line.startswith("Issue 17") for line in lines)  # no AntMaze results: no AntMaze line
