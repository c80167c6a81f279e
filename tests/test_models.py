from __future__ import annotations

import pickle

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.models import build_model, load_weights, read_state_dict


def tiny_factory(num_classes: int = 10) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))


def test_torchvision_model_has_requested_classes():
    model = build_model("resnet18", num_classes=7).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_googlenet_has_single_output_in_training_mode():
    model = build_model("googlenet", num_classes=5).train()
    out = model(torch.zeros(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)


def test_factory_spec():
    model = build_model("tests.test_models:tiny_factory", num_classes=3)
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3)


@pytest.mark.parametrize("name", ["nosuchnet", "nosuchpkg.mod:fn", "os:getcwd"])
def test_unknown_models_are_clear_errors(name):
    with pytest.raises(PrunekitError):
        build_model(name, 10)


def test_weights_roundtrip_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = build_model("resnet18", 10)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        other = build_model("resnet18", 10)
        load_weights(other, tmp_path / name)
        assert torch.equal(other.fc.weight, model.fc.weight)


class Payload:
    def __reduce__(self):
        return (print, ("this ran while unpickling",))


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(PrunekitError, match="pickled Python objects"):
        read_state_dict(path)


def test_corrupt_and_truncated_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(PrunekitError, match="cannot read"):
        read_state_dict(tmp_path / "junk.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    with pytest.raises(PrunekitError, match="corrupt safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")
    with pytest.raises(PrunekitError, match="not found"):
        read_state_dict(tmp_path / "missing.pt")


def test_mismatched_architecture_names_first_key(tmp_path):
    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(PrunekitError, match="missing key|unexpected key"):
        load_weights(build_model("mobilenet_v2", 10), tmp_path / "r18.pt")
    with pytest.raises(PrunekitError, match="'fc.weight' has shape"):
        load_weights(build_model("resnet18", 5), tmp_path / "r18.pt")


def test_pickle_of_plain_object_is_not_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    with open(path, "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    with pytest.raises(PrunekitError):
        read_state_dict(path)


def test_modules_that_check_their_version_load_from_tensors_only(tmp_path):
    from safetensors.torch import save_file

    model = build_model("mnasnet0_5", 10)  # MNASNet refuses a state dict without its version
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    other = build_model("mnasnet0_5", 10)
    load_weights(other, tmp_path / "m.safetensors")
    assert torch.equal(other.classifier[1].weight, model.classifier[1].weight)
