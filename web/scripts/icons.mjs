// Renders static/icons/icon.svg into the PNG icons the manifest names, with the pinned
// Chromium driver (playwright-core) and Debian's chromium: no image library to install.
// The PNGs are committed; run this after changing the SVG.
//   node scripts/icons.mjs            (DRAGOMAN_CHROMIUM overrides /usr/bin/chromium)
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const icons = join(dirname(fileURLToPath(import.meta.url)), "..", "static", "icons");
const svg = readFileSync(join(icons, "icon.svg"), "utf8");
// A maskable icon is cropped to a circle or squircle by the launcher: square corners, and the
// mark inside the central 80% safe zone (https://www.w3.org/TR/appmanifest/#icon-masks).
const maskable = svg.replace(/rx="112"/, 'rx="0"').replace('<g id="mark">', '<g id="mark" transform="translate(76.8 76.8) scale(0.7)">');
const wanted = [
  { file: "icon-192.png", size: 192, svg },
  { file: "icon-512.png", size: 512, svg },
  { file: "maskable-512.png", size: 512, svg: maskable },
];

const browser = await chromium.launch({
  executablePath: process.env.DRAGOMAN_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox", "--headless"],
});
try {
  const page = await browser.newPage();
  for (const { file, size, svg: source } of wanted) {
    await page.setViewportSize({ width: size, height: size });
    const sized = source.replace("<svg ", `<svg width="${size}" height="${size}" `);
    await page.setContent(`<style>html,body{margin:0;background:transparent}svg{display:block}</style>${sized}`);
    await page.screenshot({ path: join(icons, file), omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
  }
} finally {
  await browser.close();
}
