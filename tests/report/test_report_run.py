"""A restore writes its report: JSON (versioned), a self-contained HTML page that renders in a real
browser, provenance tags in the output; `reel report` re-renders it; a rerun gives the same bytes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pipeline import INVENTED_DETAIL_NOTICE, __version__
from pipeline.config import Config, load_config
from pipeline.report.model import ReportArtifacts, flagged
from pipeline.run.report import NOTHING_INVENTED, REPORT_VERSION, RestoreReport
from tests.anon.conftest import clip, clip_video

__all__ = ["clip", "clip_video"]  # the anonymise clip, for the anonymised page's check

SETTINGS = [
    "search.steps=8",
    "search.warm_steps=3",
    "search.gaussian_samples=2000",
    "run.device=cpu",
    "run.executor=local",
    "run.progress=false",
    "report.spread_k=3",
    "report.spread_faces=2",
    "compose.max_face_stretch=8",  # the 16-px test generator's faces are pasted, not fallen back
]


def _config(model: Path, workdir: Path) -> Config:
    return load_config(sets=[f"prior.model={model}", f"run.workdir={workdir}", *SETTINGS])


def _restore(video: Path, output: Path, cfg: Config) -> RestoreReport:
    from pipeline.run.restore import restore

    return restore(video, output, cfg)


@dataclass
class _Run:
    input: Path
    output: Path
    report: RestoreReport
    config: Config

    @property
    def html(self) -> Path:
        return self.output.with_name(self.output.name + ".report.html")

    @property
    def body(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.output.with_name(self.output.name + ".report.json").read_text())


@pytest.fixture(scope="module")
def run(face_video: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> _Run:
    root = tmp_path_factory.mktemp("report")
    cfg = _config(tiny_model, root / "work")
    out = root / "out.mkv"
    return _Run(face_video, out, _restore(face_video, out, cfg), cfg)


def test_json_report_is_versioned_with_provenance_totals_and_steadiness(run: _Run) -> None:
    body = run.body
    assert body["version"] == REPORT_VERSION and body["notice"] == INVENTED_DETAIL_NOTICE
    assert body["input"] == str(run.input)
    prov = body["provenance"]
    assert prov["reel_version"] == __version__ and prov["model_key"] and prov["settings_key"]
    assert prov["seed"] == run.config.search.seed
    totals = body["totals"]
    assert totals["restored"] == len(body["faces"]) == run.report.restored > 0
    assert totals["met_bound"] + totals["missed_bound"] == totals["searched"] == totals["restored"]
    assert totals["fell_back"] == 0 and 0 < totals["met_bound_in_frame"] <= totals["restored"]
    for track in body["tracks"]:
        assert track["steadiness"] is not None and track["steadiness"] >= 0
        assert len(track["motion"]["output_change"]) == track["restored"] - 1
    assert {"scan", "search", "compose", "mux", "report"} <= set(body["seconds"])
    # every track belongs to exactly one person (pipeline.faces.people)
    assert sorted(t for p in body["people"] for t in p["tracks"]) == sorted(
        t["track_id"] for t in body["tracks"]
    )
    assert {"id", "tracks", "frames", "decided", "thumbs"} <= set(body["people"][0])
    assert all([t["track_id"] for t in p["thumbs"]] == p["tracks"] for p in body["people"])
    assert [s["k"] for s in body["spread"]] == [3, 3]
    # the sidecar with the resolved settings is beside the output
    assert run.output.with_name("out.mkv.config.yaml").is_file()


def test_html_is_self_contained_and_links_resolve(run: _Run) -> None:
    html = run.html.read_text()
    assert INVENTED_DETAIL_NOTICE in html and "RANDOM TEST GENERATOR" in html
    assert "<script" not in html and "<link" not in html and "url(" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    ids = set(re.findall(r'id="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    assert links and set(links) <= ids
    body = run.body
    for row in body["faces"]:  # every flagged face-frame is listed and links to a picture or its track
        if flagged(row):
            assert f"<td>{row['track_id']}</td><td>{row['frame']}</td>" in html
    pictured = re.findall(r'id="f-(\d+)-(\d+)"', html)
    assert len({t for t, _ in pictured}) == len(body["tracks"])  # a contact sheet per track
    assert html.count('class="strip"') == len(body["shots"])  # a thumbnail strip per shot
    assert html.count("spread heat map") == 2
    # the people sheet: a row per person, the output pictured at each of their tracks
    assert all(f'id="person-{p["id"]}"' in html for p in body["people"])
    assert html.count('(output)"') == len(body["tracks"])


def test_output_carries_provenance_tags(run: _Run) -> None:
    import av

    with av.open(str(run.output)) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}
    prov = run.body["provenance"]
    assert tags["reel_version"] == __version__
    assert tags["reel_model"] == prov["model_key"] and tags["reel_settings"] == prov["settings_key"]
    assert "restored by reel" in tags["comment"]
    random = run.body["random_test_generator"]
    assert tags["reel_prior"] == ("random-test-generator" if random else "checkpoint")
    assert ("random TEST generator" in tags["comment"]) == random


def test_the_video_stream_keeps_the_source_tags_not_the_parts(run: _Run, face_video: Path) -> None:
    import av

    def video_tags(path: Path) -> dict[str, str]:
        with av.open(str(path)) as c:
            return {k.lower(): v for k, v in c.streams.video[0].metadata.items() if k.lower() != "duration"}

    assert video_tags(run.output) == video_tags(face_video)


def test_reel_report_rerenders_the_same_page_without_recomputing(
    run: _Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import main

    before = run.html.read_bytes()
    run.html.unlink()

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("reel report must not search")

    monkeypatch.setattr("pipeline.search.search.search", no_search)
    assert main(["report", str(run.output)]) == 0
    assert run.html.read_bytes() == before


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _render(page: Path, png: Path) -> str:
    """Open `page` in headless Chromium, screenshot it; return Chromium's log (stderr)."""
    cmd = [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1366,900",  # a laptop screen
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def _page_errors(log: str) -> list[str]:
    # Console messages and failed loads (Chromium's own dbus/GPU noise on a headless box is not the page's)
    return [
        line for line in log.splitlines() if "CONSOLE" in line or "net::ERR" in line or "Uncaught" in line
    ]


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_errors(run: _Run, tmp_path: Path) -> None:
    import cv2

    png = tmp_path / "report.png"
    log = _render(run.html, png)
    assert _page_errors(log) == []
    shot = cv2.imread(str(png))
    assert shot is not None and shot.shape[:2] == (900, 1366)
    assert float(shot.std()) > 10  # not a blank page
    # the check does catch a page that fails (so the empty list above means something)
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png"><script>nope()</script></body></html>'
    )
    assert _page_errors(_render(broken, tmp_path / "broken.png"))


def test_rerun_with_the_same_settings_gives_the_same_bytes(
    run: _Run, tiny_model: Path, tmp_path: Path
) -> None:
    again = tmp_path / "out.mkv"
    _restore(run.input, again, _config(tiny_model, tmp_path / "work"))
    assert again.read_bytes() == run.output.read_bytes()


def test_spread_is_stored_and_brighter_where_the_prior_invents(run: _Run) -> None:
    from pipeline.report.spread import spread_from_arrays

    artifacts = ReportArtifacts.from_json(run.body["artifacts"])
    assert artifacts.spread is not None
    with np.load(artifacts.spread) as npz:
        spreads = spread_from_arrays({k: npz[k] for k in npz.files})
    assert len(spreads) == 2
    for s in spreads:
        assert s.spread.shape == s.mean.shape[:2] and float(s.spread.min()) >= 0
        assert float(s.spread.max()) > 0  # different starts do not all land on one face


@pytest.fixture(scope="module")
def plain(face_video: Path, tmp_path_factory: pytest.TempPathFactory) -> _Run:
    """The same clip restored without a face model."""
    root = tmp_path_factory.mktemp("plain")
    cfg = load_config(sets=[f"run.workdir={root / 'work'}", "run.executor=local", "run.progress=false"])
    out = root / "plain.mkv"
    return _Run(face_video, out, _restore(face_video, out, cfg), cfg)


def test_a_restore_without_a_face_model_writes_a_page_too(plain: _Run) -> None:
    html = plain.html.read_text()
    assert "not scanned for faces" in html and html.count('src="data:image/jpeg') == 8
    body = plain.body
    assert body["tracks"] == [] and body["model"] is None and body["provenance"]["model_key"] is None
    # nothing looked for, nothing invented: no zero counts, no green "all met", no invented-detail box
    assert body["scanned"] is False and body["notice"] == NOTHING_INVENTED
    assert "faces not looked for" in html and "faces were not looked for" in html
    for contradiction in ("no faces found", "every restored face-frame", "Invented detail", ">shots<"):
        assert contradiction not in html, contradiction
    assert INVENTED_DETAIL_NOTICE not in html


@dataclass
class _Fell:
    output: Path
    line: str  # what the command line printed

    @property
    def html(self) -> Path:
        return self.output.with_name(self.output.name + ".report.html")

    @property
    def body(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.output.with_name(self.output.name + ".report.json").read_text())


@pytest.fixture(scope="module")
def fell(face_video: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> _Fell:
    """Every face drawn too large for the prior, through the command line: all fall back."""
    import contextlib
    import io

    from pipeline.cli import main

    root = tmp_path_factory.mktemp("fell")
    out = root / "fell.mkv"
    sets = [f"prior.model={tiny_model}", f"run.workdir={root / 'work'}", *SETTINGS, "report.spread_k=0"]
    args = ["restore", str(face_video), "-o", str(out), *[a for s in sets for a in ("--set", s)]]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*args, "--set", "compose.max_face_stretch=1"]) == 0
    return _Fell(out, printed.getvalue())


def test_faces_that_fall_back_are_not_counted_as_restored(fell: _Fell) -> None:
    """Every face drawn too large for the prior (issue 22: `--scale 3` said `55/55 restored` while all
    55 fell back): the command line, the JSON and the page count them as fallbacks, not restored."""
    line, out = fell.line, fell.output
    body = fell.body
    totals = body["totals"]
    assert totals["searched"] == totals["fell_back"] == body["face_frames"] > 0
    assert totals["restored"] == body["restored"] == totals["met_bound_in_frame"] == 0
    assert body["notice"] == NOTHING_INVENTED and all(t["restored"] == 0 for t in body["tracks"])
    assert f"0/{body['face_frames']} face-frames restored, {totals['fell_back']} fell back" in line
    assert INVENTED_DETAIL_NOTICE not in line
    html = out.with_name("fell.mkv.report.html").read_text()
    assert "fell back to the plain upscale (not restored)" in html and "Invented detail" not in html
    assert f"<b>0/{body['face_frames']}</b><span>face-frames restored" in html


class _Seen(HTMLParser):
    """What a reader sees on a page Chromium rendered: its cards (label → value), the rows of its
    flagged table, and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.flagged_rows = 0
        self.text: list[str] = []
        self._stack: list[str] = []
        self._card: list[str] | None = None
        self._section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        self._stack.append(tag)
        if tag == "div" and cls == "card":
            self._card = []
        if tag == "h2":
            self._section = ""
        if tag == "tr" and self._section == "Flagged face-frames":
            self.flagged_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            self._stack.pop()
        if tag == "div" and self._card is not None:
            value, *label = self._card
            self.cards[" ".join(label)] = value
            self._card = None

    def handle_data(self, data: str) -> None:
        if "style" in self._stack or not data.strip():
            return
        if self._stack and self._stack[-1] == "h2":
            self._section += data.strip()
        if self._card is not None:
            self._card.append(data.strip())
        self.text.append(data.strip())

    @property
    def visible(self) -> str:
        return " ".join(self.text)


def _seen(page: Path) -> _Seen:
    """The DOM after Chromium loaded `page` (what it would paint), parsed."""
    cmd = [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = _Seen()
    seen.feed(proc.stdout)
    return seen


def _contradictions(seen: _Seen, body: dict) -> list[str]:  # type: ignore[type-arg]
    """Where a restore's page disagrees with itself or with its JSON report."""
    bad = []
    text, cards = seen.visible, seen.cards
    totals = body.get("totals", {})
    restored, fell = int(totals.get("restored", 0)), int(totals.get("fell_back", 0))
    flagged_rows = [r for r in body.get("faces", []) if flagged(r)]

    def want(ok: bool, what: str) -> None:
        if not ok:
            bad.append(what)

    want(cards.get("frames") == str(body["frames"]), "frames card")
    if not body.get("scanned", True):
        want("faces not looked for (no face model)" in cards, "no-model card")
        for word in ("shots", "face tracks", "face-frames restored", "flagged"):
            want(word not in cards, f"a {word!r} card on a run that looked for no faces")
        for phrase in ("no faces found", "every restored face-frame", "Invented detail"):
            want(phrase not in text, f"{phrase!r} on a run that looked for no faces")
        want(str(body["notice"]) in text, "the nothing-invented notice")
        return bad
    want(cards.get("shots") == str(len(body["shots"])), "shots card vs JSON")
    want(cards.get("face tracks") == str(len(body["tracks"])), "tracks card vs JSON")
    want(cards.get("face-frames restored") == f"{restored}/{body['face_frames']}", "restored card vs JSON")
    fell_card = cards.get("fell back to the plain upscale (not restored)")
    want(fell_card == (str(fell) if fell else None), "fell-back card vs JSON")
    met = cards.get("of the restored meet the bound in the output")
    if restored:
        want(met is not None and met.split()[0] == str(totals["met_bound_in_frame"]), "in-frame card vs JSON")
    else:
        want(met is None, "an in-frame percentage of nothing restored")
    want(cards.get("flagged") == str(len(flagged_rows)), "flagged card vs JSON")
    want(seen.flagged_rows == (len(flagged_rows) + 1 if flagged_rows else 0), "flagged table vs card")
    all_met = "every restored face-frame meets the bound" in text
    want(all_met == (not flagged_rows and bool(body["faces"])), "the all-met line vs the flagged list")
    per_track = sum(int(n) for n in re.findall(r"(\d+) face-frames restored ·", text))
    want(per_track == restored, "tracks' restored counts vs the card")
    want(("Invented detail" in text) == (restored > 0), "invented-detail notice vs what was restored")
    return bad


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_what_a_reader_sees_agrees_with_itself_and_the_json(run: _Run, plain: _Run, fell: _Fell) -> None:
    """Issue 22: the pages of a run with faces, one without a face model and one where every face fell
    back, as Chromium renders them: cards, sections and the JSON tell one story."""
    for case in (run, plain, fell):
        seen = _seen(case.html)
        assert _contradictions(seen, case.body) == [], case.html
    # the check catches a page that says otherwise
    seen = _seen(fell.html)
    seen.cards["face-frames restored"] = f"{fell.body['face_frames']}/{fell.body['face_frames']}"
    assert "restored card vs JSON" in _contradictions(seen, fell.body)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_an_anonymised_page_agrees_with_its_audit_and_shows_no_footage_face(
    clip_video: Path, tmp_path: Path
) -> None:
    from pipeline.api import anonymize

    out = tmp_path / "hidden.mkv"
    sets = [f"run.workdir={tmp_path / 'work'}", "run.executor=local", "run.progress=false"]
    cfg = load_config(["anonymize"], [*sets, "scan.detect_size=320"])
    report = anonymize(clip_video, out, cfg)
    audit = json.loads(Path(f"{out}.anon.json").read_text())
    assert report.html_path is not None
    seen = _seen(report.html_path)
    cards = seen.cards
    assert cards["face-frames hidden"] == str(audit["face_frames"]) == str(report.face_frames)
    assert cards["masked"] == str(audit["masked"]) and cards["replaced by synthetic faces"] == str(
        audit["synthetic"]
    )
    assert cards["face-frames above the threshold"] == str(audit["identity"]["leaked_face_frames"])
    assert cards["face tracks"] == str(len(audit["tracks"]))
    assert "restored" not in seen.visible.lower()  # nothing on an anonymised page is "restored"
    html = report.html_path.read_text()
    assert "footage crop" not in html and "restored face" not in html  # only the output is pictured
