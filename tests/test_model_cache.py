"""``pescore cache export`` / ``import``: a class's machines get the zoo models without training them."""
import json

import pytest
import torch

from pescore_nb import cli, model_cache, zoo


@pytest.fixture
def trained_cache(tmp_path, monkeypatch):
    """A model cache holding real weight files of the class models (untrained weights, saved where
    ``zoo.load`` looks), so the export trains nothing."""
    cache = tmp_path / "teacher-cache"
    for arch, dataset, seed in model_cache.CLASS_MODELS:
        path = zoo.cached_path(arch, dataset, seed=seed, cache_dir=cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        torch.save(zoo.build(arch, 6, 64).state_dict(), path)
    monkeypatch.setenv(zoo.CACHE_ENV, str(cache))
    return cache


def test_export_then_import_gives_a_machine_the_same_models_without_training(trained_cache, tmp_path, monkeypatch):
    folder = tmp_path / "usb-stick"
    assert cli.main(["cache", "export", str(folder)]) == 0
    class_cache = tmp_path / "class-machine-cache"
    monkeypatch.setenv(zoo.CACHE_ENV, str(class_cache))
    assert cli.main(["cache", "import", str(folder)]) == 0
    for arch, dataset, seed in model_cache.CLASS_MODELS:
        there = zoo.load(arch, dataset, seed=seed, train_if_missing=False)  # raises if it would have to train
        here = zoo.load(arch, dataset, seed=seed, cache_dir=trained_cache, train_if_missing=False)
        for (name, a), b in zip(there.state_dict().items(), here.state_dict().values()):
            assert torch.equal(a, b), name
    assert sorted(p.name for p in class_cache.iterdir()) == sorted(json.loads((folder / "MANIFEST.json").read_text()))
    assert cli.main(["cache", "import", str(folder)]) == 0  # the same bytes again: nothing to do, no error


def test_import_refuses_a_damaged_copy_and_never_replaces_other_weights(trained_cache, tmp_path, capsys):
    folder = tmp_path / "export"
    files = model_cache.export_models(folder, progress=False)
    other_cache = tmp_path / "other"
    other_cache.mkdir()
    (other_cache / files[0].name).write_bytes(b"another model")
    with pytest.raises(FileExistsError, match="exists with other weights; move it away"):
        model_cache.import_models(folder, cache_dir=other_cache)
    assert sorted(p.name for p in other_cache.iterdir()) == [files[0].name]  # nothing copied before the check
    files[1].write_bytes(files[1].read_bytes()[:-10])  # a partial copy
    assert cli.main(["cache", "import", str(folder)]) == 2
    assert "does not match its SHA-256 in MANIFEST.json" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="already holds exported models"):
        model_cache.export_models(folder, progress=False)
    with pytest.raises(FileNotFoundError, match="has no MANIFEST.json"):
        model_cache.import_models(tmp_path / "nowhere")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    files[1].unlink()
    with pytest.raises(FileNotFoundError, match="is listed in MANIFEST.json but missing; copy the whole"):
        model_cache.import_models(folder, cache_dir=tmp_path / "empty")
    (folder / "MANIFEST.json").write_text(json.dumps({"../elsewhere.pt": manifest[files[0].name]}))
    with pytest.raises(ValueError, match="not a weight file of the folder"):
        model_cache.import_models(folder, cache_dir=tmp_path / "empty")
    assert not (tmp_path / "empty").exists()  # nothing written by a refused import
