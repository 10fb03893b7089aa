"""Vehicle tracking and voting (anpr/tracking.py): per-frame reads grouped into vehicles, each
committed once with the text its frames agree on. Pure: this file imports nothing but the
tracking module, so the rules are tested without threads, OpenCV or a reader."""

from __future__ import annotations

from anpr.tracking import FrameRead, VehicleTracker, vote, vote_characters

S = 1_000_000


def fr(text: str, conf: float, t_us: int) -> FrameRead:
    return FrameRead(text, conf, t_us, (100, 100, 200, 40))


def leave(t: VehicleTracker, at_us: int) -> list:
    """Two frames looked at with nothing in them: what ends a vehicle that has left."""
    return t.add([], at_us) + t.add([], at_us + 200_000)


def test_tracker_commits_each_vehicle_once_when_frames_agree():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    assert t.add([fr("AB12CDE", 0.9, 0)], 0) == []
    (v,) = t.add([fr("AB12CDE", 0.95, 200_000)], 200_000)
    assert (v.text, v.frames, v.read_us, v.commit_frame_us) == ("AB12CDE", 2, 200_000, 200_000)
    # Later frames of the same vehicle, misread or partly visible, are absorbed.
    assert t.add([fr("AB12CDF", 0.8, 400_000)], 400_000) == []
    assert t.add([fr("AB12CD", 0.7, 600_000)], 600_000) == []
    assert leave(t, 3 * S) == []
    # The next vehicle is its own read.
    t.add([fr("XY70ZZZ", 0.9, 4 * S)], 4 * S)
    (w,) = t.add([fr("XY70ZZZ", 0.9, 4 * S + 200_000)], 4 * S + 200_000)
    assert w.text == "XY70ZZZ"


def test_tracker_votes_when_frames_disagree_and_commits_at_gap():
    t = VehicleTracker(agree_frames=3, gap_us=S)
    t.add([fr("AB12CDE", 0.9, 0)], 0)
    t.add([fr("A812CDE", 0.6, 200_000)], 200_000)
    t.add([fr("AB12CDE", 0.8, 400_000)], 400_000)
    t.add([fr("AB12COE", 0.7, 600_000)], 600_000)
    assert t.add([], 1_000_000) == []  # one empty frame, 0.4 s later: not gone yet
    (v,) = leave(t, 2 * S)
    assert v.text == "AB12CDE" and v.frames == 4 and v.read_us == 0
    assert 0 < v.confidence < 0.9


def test_tracker_single_glimpse_needs_high_confidence():
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    t.add([fr("LOW1", 0.6, 0)], 0)
    assert leave(t, 2 * S) == []
    t.add([fr("MN73", 1.0, 2500_000)], 2500_000)  # a plate's left group alone, however sure
    assert leave(t, 4 * S) == []
    t.add([fr("HIGH12", 0.97, 5 * S)], 5 * S)
    assert t.flush(6 * S) == []  # no frames looked at: only a long silence ends it
    (v,) = t.flush(9 * S)
    assert v.text == "HIGH12"


def test_tracker_two_plates_in_one_frame_are_two_vehicles():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    t.add([fr("AB12CDE", 0.9, 0), fr("XY70ZZZ", 0.9, 0)], 0)
    out = t.add([fr("AB12CDE", 0.9, 100_000), fr("XY70ZZZ", 0.9, 100_000)], 100_000)
    assert sorted(v.text for v in out) == ["AB12CDE", "XY70ZZZ"]


def test_tracker_partial_plate_joins_its_vehicle():
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    t.add([fr("19JX", 0.95, 0)], 0)  # the plate entering the view
    t.add([fr("FJ19JXY", 0.99, 200_000)], 200_000)
    (v,) = t.add([fr("FJ19JXY", 0.99, 400_000)], 400_000)
    assert v.text == "FJ19JXY" and v.frames == 3
    assert t.add([fr("J19JXY", 0.95, 600_000)], 600_000) == []
    assert leave(t, 3 * S) == []


def test_tracker_piece_with_a_misread_cut_end_joins_its_vehicle():
    # Seen in CI: "ID815" (the G of "WGD815C" half in view, read as I) in one frame at 0.94,
    # then the whole plate; the piece was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = t.add([fr("ID815", 0.94, 0)], 0)
    committed += t.add([fr("WGD815C", 1.0, 100_000)], 100_000)
    committed += t.add([fr("WGD815C", 1.0, 300_000)], 300_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["WGD815C"]
    # Seen in CI too: "FKG3A" (the front of "FK63AFH", its 6 read as G) a second after the
    # whole plate was committed; it was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = t.add([fr("FK63AFH", 1.0, 0)], 0) + t.add([fr("FK63AFH", 1.0, 200_000)], 200_000)
    committed += t.add([fr("FKG3A", 0.93, 1_200_000)], 1_200_000) + leave(t, 4 * S)
    assert [v.text for v in committed] == ["FK63AFH"]
    # Two vehicles that share only three characters stay apart.
    u = VehicleTracker(agree_frames=2, gap_us=S, single_conf=0.9)
    committed = u.add([fr("XY815", 0.95, 0)], 0) + u.add([fr("WGD815C", 1.0, 100_000)], 100_000)
    committed += u.add([fr("WGD815C", 1.0, 300_000)], 300_000) + leave(u, 3 * S)
    assert sorted(v.text for v in committed) == ["WGD815C", "XY815"]


def test_tracker_piece_read_beside_the_whole_plate_in_one_frame_is_not_a_second_vehicle():
    # Seen in the end-to-end run: the reader returned "9ERA" beside "GW19ERA" in the same
    # frames, and the piece was committed as a vehicle of its own.
    t = VehicleTracker(agree_frames=2, gap_us=S)
    committed = t.add([fr("GW19ERA", 0.95, 0), fr("9ERA", 0.9, 0)], 0)
    committed += t.add([fr("GW19ERA", 0.97, 200_000), fr("9ERA", 0.92, 200_000)], 200_000)
    committed += t.add([fr("9ERA", 0.9, 400_000)], 400_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["GW19ERA"]


def test_tracker_end_of_a_plate_read_twice_before_the_whole_is_not_the_vehicle():
    # Seen in the end-to-end run: "15DRH" (a valid dateless registration) read in two frames as
    # "BG15DRH" entered the view was committed early as the vehicle.
    t = VehicleTracker(agree_frames=2, gap_us=S)
    committed = t.add([fr("15DRH", 0.95, 0)], 0)
    committed += t.add([fr("15DRH", 0.95, 200_000)], 200_000)
    committed += t.add([fr("BG15DRH", 0.97, 400_000)], 400_000)
    committed += t.add([fr("BG15DRH", 0.97, 600_000)], 600_000)
    committed += leave(t, 3 * S)
    assert [v.text for v in committed] == ["BG15DRH"]


def test_tracker_a_plates_left_group_read_twice_waits_for_the_whole():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    assert t.add([fr("MS73", 0.99, 0)], 0) == []
    assert t.add([fr("MS73", 0.99, 200_000)], 200_000) == []  # short: no early commit
    assert t.add([fr("MS73BJA", 0.98, 400_000)], 400_000) == []
    (v,) = t.add([fr("MS73BJA", 0.97, 600_000)], 600_000)
    assert v.text == "MS73BJA"
    # And a short plate that really is short is still read, when the vehicle has left.
    t.add([fr("K1", 0.95, 5 * S)], 5 * S)
    t.add([fr("K1", 0.95, 5 * S + 200_000)], 5 * S + 200_000)
    (w,) = leave(t, 7 * S)
    assert w.text == "K1"


def test_tracker_slow_reads_do_not_split_a_vehicle_and_a_stopped_one_is_read_once():
    t = VehicleTracker(agree_frames=2, gap_us=S)
    # On a busy machine the reads of one vehicle came 1.5 s apart: still one vehicle.
    assert t.add([fr("FV52", 0.99, 0)], 0) == []
    (v,) = t.add([fr("FV52HFW", 0.99, 1_500_000)], 1_500_000) + t.add([fr("FV52HFW", 0.99, 3 * S)], 3 * S)
    assert v.text == "FV52HFW"
    # It stops under the camera (nothing moves: empty frames), then drives off: no second read.
    assert leave(t, 5 * S) == []
    assert t.add([fr("FV52HFW", 0.99, 8 * S)], 8 * S) == []
    assert t.add([fr("FV52HFW", 0.99, 8 * S + 200_000)], 8 * S + 200_000) == []
    assert leave(t, 10 * S) == []


def test_vote_outvotes_a_misread_character():
    reads = [FrameRead("AB12CDE", 0.9, 0, (0, 0, 1, 1), [0.9] * 7), FrameRead("A812CDE", 0.95, 1, (0, 0, 1, 1),
             [0.99, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99]), FrameRead("AB12CDE", 0.8, 2, (0, 0, 1, 1), [0.8] * 7)]
    v = vote(reads)
    assert v.text == "AB12CDE" and v.frame_us == 0 and len(v.char_confidences) == 7




def test_vote_characters_fixes_a_character_misread_in_one_frame() -> None:
    confs7 = [0.9] * 7
    reads = [FrameRead("AB12CDE", 0.9, 0, (10, 10, 100, 20), confs7),
             FrameRead("AB12CDF", sum([0.9] * 6 + [0.4]) / 7, 1, (10, 10, 100, 20), [0.9] * 6 + [0.4]),
             FrameRead("AB12CDE", 0.9, 2, (10, 10, 100, 20), confs7)]
    text, confs = vote_characters(reads)
    assert text == "AB12CDE" and len(confs) == 7 and confs[-1] < confs[0]


# ---------------------------------------------------------------------------------------------
# Per-character probabilities put together across frames (fuse_characters, weak reads)


def weak(text: str, truth: str, t_us: int, p_true: float = 0.4, seed: int = 0) -> FrameRead:
    """A frame's read of ``truth`` too dark or small to be sure of: each character's true
    symbol at ``p_true``, beside a look-alike a little likelier in some positions (the
    frame's best guess, ``text``)."""
    alts = []
    for i, (shown, real) in enumerate(zip(text, truth, strict=True)):
        if shown == real:
            alts.append({real: p_true, "Q" if real != "Q" else "O": 0.2})
        else:
            alts.append({shown: p_true + 0.05, real: p_true - 0.05 + 0.01 * ((i + seed) % 3)})
    confs = [max(a.values()) for a in alts]
    return FrameRead(text, sum(confs) / len(confs), t_us, (100, 100, 200, 40), confs, text, "", alts)


def test_fuse_characters_multiplies_the_frames_probabilities() -> None:
    # Three frames each misread a different character; no frame and no whole-string vote has the
    # plate, the characters' probabilities put together do.
    truth = "AB12CDE"
    reads = [weak("A812CDE", truth, 0), weak("AB12C0E", truth, 1), weak("AB1ZCDE", truth, 2)]
    from anpr.grammar import UK
    from anpr.tracking import fuse_characters

    text, confs, fmt = fuse_characters(reads, UK)
    assert (text, fmt) == (truth, "current")
    assert len(confs) == 7 and all(0 < c <= 1 for c in confs)
    assert fuse_characters(reads[:1], UK) is None  # one frame is no fusion
    # Without a grammar: per position, the likeliest symbol.
    assert fuse_characters(reads)[0] == truth
    v = vote(reads, UK)
    assert v.text == truth and v.format == "current" and v.char_confidences == confs


def test_weak_reads_alone_make_a_vehicle_when_put_together() -> None:
    # A plate read at 0.4 a frame: below min_conf, so without weak reads nothing is committed.
    truth = "AB12CDE"
    frames = [weak("AB12CDE", truth, i * 200_000, p_true=0.42, seed=i) for i in range(4)]
    from anpr.grammar import UK

    plain = VehicleTracker(agree_frames=2, gap_us=S, min_conf=0.5)
    for f in frames:
        assert plain.add([f], f.frame_us) == []
    assert leave(plain, 3 * S) == []
    t = VehicleTracker(agree_frames=2, gap_us=S, min_conf=0.5, weak_conf=0.3, grammar=UK)
    for f in frames:
        assert t.add([f], f.frame_us) == []  # weak reads never commit early
    (v,) = leave(t, 3 * S)
    assert v.text == truth and v.frames == 4 and v.confidence >= 0.5
    # One weak frame alone is not a vehicle, nor are weak frames that disagree too much.
    t = VehicleTracker(agree_frames=2, gap_us=S, min_conf=0.5, weak_conf=0.3, grammar=UK)
    t.add([weak("AB12CDE", truth, 0)], 0)
    assert leave(t, 3 * S) == []
