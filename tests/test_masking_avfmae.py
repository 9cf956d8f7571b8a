import pytest
import torch

from avfmae_hf import AVFMAEConfig, AVFMAEDualMaskingGenerator
from avfmae_hf.masking_avfmae import random_mask, running_cell_mask, running_cell_patterns, tube_mask
from tests.tiny_configs import tiny_config


def test_running_cell_rotates_one_position_per_slice():
    # architecture.md §5, phase 0 over slices 0..3
    patterns = running_cell_patterns((4, 2, 2), 0.5).view(4, 4, 2, 2)
    expected = [[[1, 0], [0, 1]], [[0, 0], [1, 1]], [[0, 1], [1, 0]], [[1, 1], [0, 0]]]
    assert patterns[0].int().tolist() == expected
    # every phase is a shift of phase 0 in time
    assert torch.equal(patterns[1, :3], patterns[0, 1:])


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_running_cell_masks_the_same_share_of_every_slice(ratio):
    mask = running_cell_mask(3, (8, 10, 10), ratio, torch.Generator().manual_seed(0)).view(3, 8, 100)
    assert (mask.sum(-1) == int(4 * ratio) * 25).all()


def test_tube_and_random_mask_counts():
    tube = tube_mask(4, (8, 10, 10), 0.9, torch.Generator().manual_seed(0))
    assert tube.shape == (4, 800) and (tube.sum(1) == 720).all()
    per_slice = tube.view(4, 8, 100)
    assert torch.equal(per_slice, per_slice[:, :1].expand_as(per_slice))
    assert not torch.equal(per_slice[0, 0], per_slice[1, 0])
    random = random_mask(4, 128, 0.8125, torch.Generator().manual_seed(0))
    assert (random.sum(1) == 104).all()


def test_generator_follows_the_config_and_the_seed():
    masks = AVFMAEDualMaskingGenerator(AVFMAEConfig())(2, generator=torch.Generator().manual_seed(0))
    again = AVFMAEDualMaskingGenerator(AVFMAEConfig())(2, generator=torch.Generator().manual_seed(0))
    assert masks.video_bool_masked_pos.sum(1).tolist() == [720, 720]
    assert masks.video_decoder_bool_masked_pos.sum(1).tolist() == [400, 400]
    assert masks.audio_bool_masked_pos.sum(1).tolist() == [104, 104]
    assert masks.audio_decoder_bool_masked_pos.sum(1).tolist() == [64, 64]
    for name, value in vars(masks).items():
        assert torch.equal(value, getattr(again, name)), name


def test_random_decoder_strategy_for_video():
    config = tiny_config(video_config={"decoder_masking_strategy": "random"})
    masks = AVFMAEDualMaskingGenerator(config)(2, generator=torch.Generator().manual_seed(0))
    slices = masks.video_decoder_bool_masked_pos.view(2, 8, 16)
    assert masks.video_decoder_bool_masked_pos.sum(1).tolist() == [64, 64]
    assert not (slices.sum(-1) == 8).all()  # not a per-slice pattern
