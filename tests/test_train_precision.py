"""Training-step options: bf16 autocast, channels-last layout, and the moving average of the weights (EMA)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from conftest import make_folder_dataset  # noqa: E402
from retinacli.cli.main import app  # noqa: E402
from retinacli.models.registry import create_model  # noqa: E402
from retinacli.train.checkpoint import load_checkpoint  # noqa: E402
from retinacli.train.config import TrainConfig  # noqa: E402
from retinacli.train.loop import make_ema, training_forward  # noqa: E402


def test_config_refuses_unknown_precision_and_bad_ema_decay(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(data=[], run_dir=tmp_path, precision="fp16")
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema_decay"):
            TrainConfig(data=[], run_dir=tmp_path, ema_decay=bad)


def _model_and_input(name: str = "hemorrhage_unet"):
    torch.manual_seed(0)
    model = create_model(name, channels=(4, 8, 16))
    x = torch.randn(2, 3, 64, 64)
    return model, x


@pytest.mark.parametrize("name", ["vessel_unet", "hemorrhage_unet", "av_seqnet", "vessel_unet_refined"])
def test_channels_last_forward_matches_the_plain_layout(tmp_path, name):
    model, x = _model_and_input(name)
    plain = training_forward(model, x, TrainConfig(data=[], run_dir=tmp_path, channels_last=False))
    model_cl = model.to(memory_format=torch.channels_last)
    cl = training_forward(model_cl, x, TrainConfig(data=[], run_dir=tmp_path, channels_last=True))
    assert plain.keys() == cl.keys()
    for k in plain:
        assert cl[k].dtype == torch.float32
        assert torch.allclose(plain[k], cl[k], atol=1e-5), k


def test_bf16_forward_runs_in_bfloat16_and_returns_float32(tmp_path):
    model, x = _model_and_input()
    fp32 = training_forward(model, x, TrainConfig(data=[], run_dir=tmp_path))["logits"]
    bf16 = training_forward(model, x, TrainConfig(data=[], run_dir=tmp_path, precision="bf16"))["logits"]
    assert bf16.dtype == torch.float32
    diff = (bf16 - fp32).abs().max().item()
    assert 0.0 < diff < 0.1  # bfloat16 has an 8-bit mantissa: close, but not the float32 result
    bf16.sum().backward()  # gradients flow back to the float32 weights
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_ema_decay_warms_up_then_holds():
    from retinacli.train.loop import ema_decay_at

    assert ema_decay_at(0.998, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.998, 10) == pytest.approx(11 / 20)
    assert ema_decay_at(0.998, 100_000) == 0.998
    assert ema_decay_at(0.2, 3) == 0.2  # (1+3)/(10+3) > 0.2


def test_ema_averages_weights_and_batch_norm_statistics():
    from retinacli.train.loop import ema_decay_at

    assert make_ema(torch.nn.Linear(2, 2), 0.0) is None
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = make_ema(model, 0.75)
    ema.update_parameters(model)  # the first update copies
    w0, m0 = model[0].weight.detach().clone(), model[1].running_mean.clone()
    assert torch.equal(ema.module[0].weight, w0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(4, 1, 8, 8) + 3.0)  # moves the running mean
    ema.update_parameters(model)
    d = ema_decay_at(0.75, 1)
    assert 0.1 < d < 0.75
    assert torch.allclose(ema.module[0].weight, d * w0 + (1 - d) * model[0].weight.detach(), atol=1e-6)
    assert torch.allclose(ema.module[1].running_mean, d * m0 + (1 - d) * model[1].running_mean, atol=1e-6)
    assert torch.equal(ema.module[1].num_batches_tracked, model[1].num_batches_tracked)  # integers are copied


def test_bf16_ema_run_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path):
    data = make_folder_dataset(tmp_path / "ds", n=2)

    def train(run, epochs, *extra):
        res = CliRunner().invoke(app, _train_args(data, run, "--epochs", str(epochs), "--precision", "bf16",
                                                  "--ema-decay", "0.9", *extra))
        assert res.exit_code == 0, res.output

    train(tmp_path / "straight", 2)
    train(tmp_path / "resumed", 1)
    train(tmp_path / "resumed", 2, "--resume")
    a = load_checkpoint(tmp_path / "straight" / "model.pt")
    b = load_checkpoint(tmp_path / "resumed" / "model.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    last = torch.load(tmp_path / "straight" / "last.pt", map_location="cpu", weights_only=False)
    assert last["ema_updates"] == 4
    # model.pt holds the average, which differs from the raw weights the optimiser moved
    assert any(not torch.equal(a["state_dict"][k], last["raw_state_dict"][k]) for k in a["state_dict"]
               if a["state_dict"][k].is_floating_point())
    assert all(v.is_contiguous() for v in a["state_dict"].values())


def test_cli_refuses_an_unknown_precision(tmp_path):
    data = make_folder_dataset(tmp_path / "ds", n=1)
    res = CliRunner().invoke(app, ["train", "vessels", "-d", f"folder:{data}", "--run-dir", str(tmp_path / "R"),
                                   "--precision", "fp16"])
    assert res.exit_code == 2
    assert "precision must be one of" in res.output
    assert not (tmp_path / "R").exists()


def _train_args(data, run, *extra):
    return ["train", "vessels", "-d", f"folder:{data}", "--run-dir", str(run), "--steps-per-epoch", "2",
            "--batch-size", "2", "--patch-px", "64", "--val-every", "0", "--threads", "1", "--channels", "4,8",
            "--canvas-px", "96", "--fov-diameter-px", "88", *extra]


def test_model_pt_and_export_of_an_ema_run_carry_no_training_state(tmp_path):
    from retinacli.export.artefact_writer import export_model_folder
    from retinacli.runtime.artefact import read_model_info
    from retinacli.train.checkpoint import TRAINING_STATE_KEYS

    data = make_folder_dataset(tmp_path / "ds", n=2)
    run = tmp_path / "R"
    res = CliRunner().invoke(app, _train_args(data, run, "--epochs", "1", "--ema-decay", "0.9"))
    assert res.exit_code == 0, res.output
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert "raw_state_dict" in last and "ema_updates" in last  # resuming needs them
    model = torch.load(run / "model.pt", map_location="cpu", weights_only=False)  # promoted from last.pt (no val)
    assert not set(TRAINING_STATE_KEYS) & set(model)
    assert not set(TRAINING_STATE_KEYS) & set(read_model_info(run / "last.pt").metadata)
    export_model_folder(run / "model.pt", tmp_path / "engine", [])
    shipped = torch.load(tmp_path / "engine" / "model.pt", map_location="cpu", weights_only=False)
    assert not set(TRAINING_STATE_KEYS) & set(shipped)


@pytest.mark.parametrize("first,then", [(("--ema-decay", "0.9"), ()), ((), ("--ema-decay", "0.9"))])
def test_resume_refuses_switching_the_weight_average(tmp_path, first, then):
    data = make_folder_dataset(tmp_path / "ds", n=1)
    run = tmp_path / "R"
    res = CliRunner().invoke(app, _train_args(data, run, "--epochs", "1", *first))
    assert res.exit_code == 0, res.output
    config_before = (run / "config.json").read_text()
    res = CliRunner().invoke(app, _train_args(data, run, "--epochs", "2", "--resume", *then))
    assert res.exit_code == 2
    assert "resume it with the same setting" in res.output
    assert (run / "config.json").read_text() == config_before  # the refused resume changed nothing


@pytest.mark.parametrize("command", ["vessels", "refine", "hemorrhage", "av"])
def test_every_train_command_passes_precision_ema_and_dice_weight_on(tmp_path, tiny_checkpoint, command):
    data = make_folder_dataset(tmp_path / "ds", n=1)
    base = {"vessels": ["train", "vessels", "-d", f"folder:{data}"],
            "refine": ["train", "refine", "--stage1", str(tiny_checkpoint), "-d", f"folder:{data}"],
            "hemorrhage": ["train", "hemorrhage", "-d", f"folder:{data}"],
            "av": ["train", "av", "-d", f"folder:{data}", "--vessel-init", str(tiny_checkpoint)]}[command]
    for option, value, message in (("--precision", "fp16", "precision must be one of"),
                                   ("--ema-decay", "1.5", "ema_decay must lie in"),
                                   ("--dice-weight", "-1", "dice_weight must be >= 0")):
        res = CliRunner().invoke(app, [*base, "--run-dir", str(tmp_path / f"R{option}"), option, value])
        assert res.exit_code == 2, res.output
        assert message in res.output


def test_train_vessels_dice_weight_reaches_the_config_and_is_checked(tmp_path):
    import json

    data = make_folder_dataset(tmp_path / "ds", n=1)
    res = CliRunner().invoke(app, _train_args(data, tmp_path / "R", "--epochs", "1", "--dice-weight", "0.25"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "R" / "config.json").read_text())["dice_weight"] == 0.25
    res = CliRunner().invoke(app, _train_args(data, tmp_path / "R2", "--epochs", "1", "--dice-weight", "-1"))
    assert res.exit_code == 2, res.output
    assert "dice_weight must be >= 0" in res.output
    assert not (tmp_path / "R2").exists() or not any((tmp_path / "R2").glob("*.pt"))
