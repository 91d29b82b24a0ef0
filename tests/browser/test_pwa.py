"""The installable app (PWA) in real Chromium through the real edge and mesh, at a phone's
(390x844) and a desktop's viewport: the manifest is linked, parses and makes the app
installable, with its icons; a service worker installs and controls the page; the screen is
kept on while a conversation runs; a denied microphone gets a clear message; and offline a
reload opens the app from the service worker, lists the past sessions from the device's cache,
and holds a sign-in until the browser is online again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import Browsers, BrowserStack, person

DRIVER = Path(__file__).with_name("drive_pwa.mjs")
WAIT_MS = 60_000  # each wait in the driver
DRIVE_S = 300  # the whole run
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.timeout(DRIVE_S + 120)  # plus loading the mesh's models and building the web client
async def test_the_app_installs_and_opens_offline(
    browsers: Browsers, stack: BrowserStack, fleurs: Path, tmp_path: Path, artifacts: Path,
) -> None:
    clip = fleurs / "fleurs-en-004.ogg"
    people = [person("alice", "en", stack.site_url, PHONE, clip, tmp_path),
              {**person("bruno", "pt", stack.site_url, DESKTOP, clip, tmp_path), "micDenied": True}]
    usernames = {p["name"]: p["username"] for p in people}
    result = await browsers(DRIVER, people, wait_ms=WAIT_MS, drive_s=DRIVE_S)
    checks = result["checks"]
    for name in ("alice", "bruno"):
        check = checks[name]
        app = check["app"]
        assert app["url"] == stack.site_url + "manifest.webmanifest" and app["errors"] == [], app
        # Chromium finds nothing missing for installing the app but the test's browser
        # context itself: playwright's contexts are incognito, where nothing installs
        assert [e["errorId"] for e in app["installabilityErrors"]] == ["in-incognito"], app

        assert app["parsed"]["display"] == "standalone" and app["parsed"]["start_url"] == "./"
        sizes = {(i["sizes"], i["purpose"]): (i["width"], i["height"]) for i in app["icons"]
                 if i["type"] == "image/png"}
        assert sizes == {("192x192", "any"): (192, 192), ("512x512", "any"): (512, 512),
                         ("512x512", "maskable"): (512, 512)}, app["icons"]
        assert app["worker"] == stack.site_url + "sw.js" and app["scope"] == stack.site_url
        assert all(check["fits"]), f"{name}'s page scrolls sideways: {check['fits']}"

        online = check["online"]
        assert [s["id"] for s in online["pastSessions"]] == [online["sessionId"]]
        other = usernames["bruno" if name == "alice" else "alice"]
        assert [o["name"] for o in online["pastSessions"][0]["others"]] == [other]

        offline = check["offline"]
        assert offline["fromServiceWorker"] and not offline["navigatorOnLine"], offline
        assert offline["banner"] and offline["history"], offline
        assert offline["state"]["pastSessionsFrom"] == "cache"
        assert offline["state"]["pastSessions"] == online["pastSessions"]
        assert len(offline["listed"]) == 1 and other in offline["listed"][0]
        assert offline["queued"]["signInQueued"] and offline["queued"]["status"] == "signed-out"
        assert offline["accountShown"] and offline["fits"] and not offline["queued"]["error"]

        back = check["back"]
        assert back["status"] == "idle" and not back["signInQueued"]
        assert back["pastSessionsFrom"] == "server" and back["pastSessions"] == online["pastSessions"]
        for suffix in ("-conversation", "-history", "-offline"):
            assert (artifacts / f"{name}{suffix}.png").stat().st_size > 10_000
    # the wake lock was held during the conversation (the driver waited for it) and let go after
    assert not checks["alice"]["online"]["wakeLock"]
    # Bruno's denied microphone: told what to do, and the button offers to try again
    assert checks["bruno"]["micError"].startswith("Microphone access is blocked. Allow the microphone")
    assert checks["bruno"]["micButton"] == "Start microphone"
