"""@dragoman/client, the TypeScript SDK (clients/typescript): it builds with its pinned
toolchain, its unit tests pass under node, and its example script streams a WAV file
through the real Envoy edge (gRPC-Web over TLS, from Node.js) to the real mesh and prints
the listener's translations. Its stubs' drift is checked by scripts/genproto.py --check."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from dragoman import audio
from tests.browser.conftest import BrowserStack, npm_build
from tests.conftest import ROOT
from tests.deploy.edge import Certs
from tests.helpers import wer

SDK = ROOT / "clients" / "typescript"
CLIP = "fleurs-en-003"  # 5.8 s of English; WER 0.07 however padded (bench/results/en_clip_stability.md)
WER_BOUND = 0.45
EXAMPLE_S = 240


@pytest.fixture(scope="session")
def sdk() -> Path:
    """clients/typescript with dist/ and dist-examples/ built from the current sources."""
    npm_build(SDK, "tsc")
    return SDK


def test_sdk_unit_tests(sdk: Path) -> None:
    """test/*.test.mjs: WAV parsing, chunking and pacing, typed events, against the built package."""
    result = subprocess.run(["node", "--test", "test/"], cwd=sdk, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(EXAMPLE_S + 180)  # plus loading the mesh's models and building the web client
async def test_example_translates_a_wav_file_through_envoy(
    sdk: Path, stack: BrowserStack, browser_certs: Certs, fleurs: Path, tmp_path: Path,
) -> None:
    wav = audio.write_wav(tmp_path / "hello.wav",
                          audio.float_to_pcm16(audio.decode_file(fleurs / f"{CLIP}.ogg", 16_000)), 16_000)
    proc = await asyncio.create_subprocess_exec(
        "node", "dist-examples/translate-wav.js", stack.edge.url, str(wav), "--from", "en", "--to", "pt",
        cwd=sdk, env={**os.environ, "NODE_EXTRA_CA_CERTS": str(browser_certs.ca)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    communicating = asyncio.ensure_future(proc.communicate())
    done, _ = await asyncio.wait([communicating], timeout=EXAMPLE_S)
    if not done:
        proc.kill()  # what it printed so far still comes out below
    out, err = await communicating
    stdout, stderr = out.decode(), err.decode()
    assert done, f"example still running after {EXAMPLE_S} s:\n{stdout}\n{stderr}"
    assert proc.returncode == 0, f"example failed ({proc.returncode}):\n{stdout}\n{stderr}"
    assert "not processed in time" not in stderr, stderr

    transcripts = re.findall(r"^transcript \(en\): (.+)$", stdout, re.M)
    translations = re.findall(r"^translation \(pt\): (.+)$", stdout, re.M)
    assert transcripts and translations, stdout
    transcript, translation = " ".join(transcripts), " ".join(translations)
    assert wer((fleurs / f"{CLIP}.txt").read_text(), transcript) <= WER_BOUND, transcript
    assert translation.strip() and translation != transcript, (transcript, translation)
    # each utterance the listener heard came with its translated speech
    seconds = [float(s) for s in re.findall(r"^speech \(pt\): ([\d.]+) s$", stdout, re.M)]
    assert len(seconds) == len(translations) and all(s > 0.3 for s in seconds), stdout
    assert re.search(r"^route: en -> pt via \S", stdout, re.M), stdout


async def test_sdk_renews_tokens_and_reports_errors_through_envoy(
    sdk: Path, stack: BrowserStack, browser_certs: Certs,
) -> None:
    """tests/browser/sdk_auth.mjs: a refused access token is renewed and the call retried once,
    one about to expire is renewed before the call, and bad input comes back as the server's
    status and message (a converse loop throws instead of reconnecting forever)."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(Path(__file__).with_name("sdk_auth.mjs")), str(sdk / "dist" / "index.js"), stack.edge.url,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(browser_certs.ca)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    assert result["retried"] == {"sessions": 0, "renewals": 1, "newRefreshToken": True,
                                 "calls": ["ListSessions", "RefreshToken", "ListSessions"]}
    assert result["ahead"]["calls"] == ["RefreshToken", "CreateSession"] and result["ahead"]["renewals"] == 1
    assert re.fullmatch(r"\d{6}", result["ahead"]["code"])
    assert result["badCode"] == {"code": "NotFound", "message": "no session is waiting for code 000000"}
    assert result["badSession"]["code"] == "NotFound" and "no-such-session" in result["badSession"]["message"]
    assert result["spent"]["code"] == "Unauthenticated" and "already used" in result["spent"]["message"]
