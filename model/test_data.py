"""Tests of the detector's training data path (`data.py`), on small inputs with known answers.

    python3 -m unittest discover -s model -p 'test_*.py'

numpy and Pillow only (the evaluation venv); `WindowsTest` also reads the YELL crops that
`tests/fetch-fixtures.sh` caches.
"""

from __future__ import annotations

import math
import random
import unittest

import numpy as np

import common
import data


class TargetsTest(unittest.TestCase):
    def test_one_crown(self):
        # 48 px square centred on (64, 64): 12 cells a side, centre cell (16, 16).
        heat, box, weight = data.targets(np.array([[40, 40, 88, 88]], np.float32), 256)
        self.assertEqual(heat.shape, (1, 64, 64))
        self.assertEqual(box.shape, (4, 64, 64))
        self.assertEqual(weight.shape, (64, 64))
        self.assertEqual(np.unravel_index(heat.argmax(), heat.shape), (0, 16, 16))
        self.assertEqual(heat[0, 16, 16], 1.0)
        # σ = 0.54 · 12 / 6 = 1.08 cells: one cell away the Gaussian is exp(−1 / (2 · 1.08²)).
        self.assertAlmostEqual(float(heat[0, 16, 17]), math.exp(-1 / (2 * 1.08**2)), places=5)
        # Regression cells: |dx|, |dy| ≤ 0.54 · 12 / 2 = 3.24, so a 7 × 7 square.
        cells = weight > 0
        self.assertEqual(int(cells.sum()), 49)
        self.assertTrue(cells[13:20, 13:20].all())
        np.testing.assert_array_equal(box[:, cells], np.tile([[40], [40], [88], [88]], (1, 49)))
        self.assertAlmostEqual(float(weight.sum()), math.log(48 * 48), places=4)

    def test_smaller_crown_owns_shared_cells(self):
        big, small = [0, 0, 160, 160], [64, 64, 96, 96]  # both centred on cell (20, 20)
        for order in ([big, small], [small, big]):
            _, box, _ = data.targets(np.array(order, np.float32), 256)
            np.testing.assert_array_equal(box[:, 20, 20], small)
            np.testing.assert_array_equal(box[:, 20, 27], big)  # outside the small one's cells

    def test_boxes_under_half_a_cell_are_skipped(self):
        heat, box, weight = data.targets(np.array([[10, 10, 11.9, 30]], np.float32), 256)
        self.assertFalse(heat.any() or box.any() or weight.any())

    def test_no_crowns(self):
        heat, box, weight = data.targets(np.zeros((0, 4), np.float32), 256)
        self.assertFalse(heat.any() or box.any() or weight.any())


class CutoutsTest(unittest.TestCase):
    def test_only_whole_crowns_of_at_least_4_px(self):
        rgb = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
        boxes = np.array(
            [
                [5, 5, 15, 13],  # inside: kept
                [0, 2, 6, 8],  # touches the left edge
                [14, 14, 20, 19],  # touches the right edge
                [2, 2, 5, 9],  # 3 px wide
            ],
            np.float32,
        )
        (cut, alpha), = data.crown_cutouts([(rgb, boxes)])
        np.testing.assert_array_equal(cut, rgb[5:13, 5:15])
        self.assertEqual(alpha.shape, (8, 10))
        self.assertEqual(alpha[4, 5], 1.0)  # the centre is opaque
        self.assertEqual(alpha[0, 0], 0.0)  # corners are outside the inscribed ellipse
        self.assertEqual(alpha[7, 9], 0.0)
        self.assertTrue(((alpha >= 0) & (alpha <= 1)).all())
        np.testing.assert_array_equal(alpha, alpha[::-1, ::-1])  # symmetric about the centre


class PasteTest(unittest.TestCase):
    def setUp(self):
        red = np.zeros((40, 40, 3), np.uint8)
        red[..., 0] = 255
        self.cutouts = data.crown_cutouts([(red, np.array([[10, 10, 30, 30]], np.float32))])

    def test_pasted_crowns_are_where_their_boxes_say(self):
        for seed in range(5):
            rgb, boxes = data.paste_crowns(random.Random(seed), self.cutouts, 128)
            self.assertEqual(rgb.shape, (128, 128, 3))
            self.assertEqual(rgb.dtype, np.uint8)
            self.assertGreater(len(boxes), 0)
            self.assertTrue(((boxes >= 0) & (boxes <= 128)).all())
            whole = [b for b in boxes if b[2] - b[0] == b[3] - b[1]]  # unclipped: square like the cutout
            for x1, y1, x2, y2 in whole:
                # 20 px scaled 0.6–1.6 per window and 0.85–1.15 per crown
                self.assertGreaterEqual(x2 - x1, round(20 * 0.6 * 0.85))
                self.assertLessEqual(x2 - x1, round(20 * 1.6 * 1.15))
            # The last crown placed is on top, so some whole crown's centre is pure red.
            centres = [rgb[int((y1 + y2) / 2), int((x1 + x2) / 2)].tolist() for x1, y1, x2, y2 in whole]
            if whole:
                self.assertIn([255, 0, 0], centres)
            # Ground far from every crown is never pure red.
            covered = np.zeros((128, 128), bool)
            for x1, y1, x2, y2 in common.clip_boxes(boxes, 0, 0, 128, 128, 0.0):
                covered[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
            ground = rgb[~covered]
            self.assertFalse(((ground[:, 0] == 255) & (ground[:, 1] == 0)).any())

    def test_placements_overlap_by_iou_at_most_a_quarter(self):
        for seed in range(5):
            _, boxes = data.paste_crowns(random.Random(seed), self.cutouts, 512)  # rarely clipped
            iou = common.iou_matrix(boxes, boxes)
            np.fill_diagonal(iou, 0)
            self.assertLessEqual(float(iou.max(initial=0)), 0.25 + 1e-6)

    def test_same_seed_same_window(self):
        a = data.paste_crowns(random.Random(7), self.cutouts, 64)
        b = data.paste_crowns(random.Random(7), self.cutouts, 64)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


class CropAndAugmentTest(unittest.TestCase):
    def test_small_crop_is_scaled_whole(self):
        # 100 px is under CROP / 1.6 = 160, so every draw takes the whole crop and scales it 2.56×.
        rgb = np.zeros((100, 100, 3), np.uint8)
        boxes = np.array([[10, 20, 30, 40], [95, 0, 120, 10]], np.float32)
        for seed in range(3):
            window, b = data.real_crop(random.Random(seed), rgb, boxes)
            self.assertEqual(window.shape, (256, 256, 3))
            np.testing.assert_allclose(b, [[25.6, 51.2, 76.8, 102.4]], rtol=1e-6)  # the second is 80% outside

    def test_boxes_follow_flips_and_turns(self):
        size = 64
        box = np.array([[8, 20, 24, 50]], np.float32)
        rgb = np.zeros((size, size, 3), np.uint8)
        rgb[20:50, 8:24] = 255
        for seed in range(12):
            out, moved = data.augment(random.Random(seed), rgb, box)
            bright = out.max(2) > out.max() / 2
            ys, xs = np.nonzero(bright)
            found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_allclose(moved[0], found, atol=2, err_msg=f"seed {seed}")


class WindowsTest(unittest.TestCase):
    def test_windows_and_targets_have_the_training_shapes(self):
        windows = data.Windows(scenes=4)
        rng = random.Random(1)
        for _ in range(6):
            image, heat, box, weight = windows.sample(rng)
            self.assertEqual(image.shape, (3, data.CROP, data.CROP))
            self.assertEqual(image.dtype, np.float32)
            s = data.CROP // common.STRIDE
            self.assertEqual((heat.shape, box.shape, weight.shape), ((1, s, s), (4, s, s), (s, s)))

    def test_training_crops_exclude_the_validation_rows(self):
        full = common.real_image(common.VALIDATION_CROP)
        rgb, boxes = common.training_crop(common.VALIDATION_CROP)
        self.assertEqual(rgb.shape[0], full.shape[0] - common.WINDOW)
        self.assertLessEqual(float(boxes[:, 3].max()), rgb.shape[0])


if __name__ == "__main__":
    unittest.main()
