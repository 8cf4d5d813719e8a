// The web dashboard in a real browser (Debian's Chromium, driven by playwright-core), as a
// user uses it. `gateway/tests/web.rs` starts the API on real RabbitMQ and a fresh database,
// runs this script, and answers its requests on stdin/stdout (one JSON object per line):
//   script → test  {"need":"tick"}      publish ticks of the symbol until told `ticked`
//   test → script  {"ticked": "<price>"} the price the ticks carry
//   script → test  {"done": {...}}      what the page did, for the test to check in the API
// Environment: TW_LOGIN_URL (a one-time sign-in link), TW_SCREENSHOTS (a directory),
// TICKWATCH_PLAYWRIGHT (playwright-core's directory), TICKWATCH_CHROMIUM (the browser).
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const { chromium } = await import(pathToFileURL(path.join(process.env.TICKWATCH_PLAYWRIGHT, 'index.mjs')).href);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const hear = async () => JSON.parse((await lines.next()).value);
const step = (text) => process.stderr.write(`dashboard: ${text}\n`);

const browser = await chromium.launch({
  executablePath: process.env.TICKWATCH_CHROMIUM,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'ko-KR' });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  step('sign in with the one-time link');
  await page.goto(process.env.TW_LOGIN_URL);
  await page.locator('#dash').waitFor({ state: 'visible' });
  const address = page.url();
  if (address.includes('login=')) problems.push(`the token stayed in the address bar: ${address}`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'tw_session');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') {
    problems.push(`the session cookie is not HttpOnly and SameSite=Strict: ${JSON.stringify(session)}`);
  }
  const pageTokenVisible = await page.evaluate(() => document.cookie.includes('tw_session'));
  if (pageTokenVisible) problems.push('a script can read the session cookie');

  step('find Samsung by its Korean name');
  await page.locator('#search').fill('삼성전자');
  const hit = page.locator('#search-results li[data-symbol="005930"]');
  await hit.waitFor({ state: 'visible' });
  await hit.dispatchEvent('mousedown');
  await page.waitForFunction(() => document.querySelector('#chart-symbol').textContent.startsWith('005930')
    && Number(document.querySelector('#chart').dataset.bars) > 100);
  const title = await page.locator('#chart-name').textContent();

  step('candles are drawn');
  const inked = await page.evaluate(() => {
    // Pixels that are not the background, over every canvas of the chart.
    let count = 0;
    for (const canvas of document.querySelectorAll('#chart canvas')) {
      const { width, height } = canvas;
      if (!width || !height) continue;
      const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) count += 1;
      }
    }
    return count;
  });
  if (inked < 2000) problems.push(`the chart looks blank (${inked} inked pixels)`);
  const bars = Number(await page.locator('#chart').getAttribute('data-bars'));
  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.markers) > 0);
  const markers = Number(await page.locator('#chart').getAttribute('data-markers'));
  const signalRows = await page.locator('#signals-table tbody tr').count();
  const lastClose = Number(await page.locator('#chart').getAttribute('data-last-close'));

  step('create an alert in the page');
  const level = String(Math.round(lastClose * 1.1));
  await page.locator('#af-condition').selectOption('crossing_up');
  await page.locator('#af-threshold').fill(level);
  await page.locator('#af-trigger').selectOption('once');
  await page.locator('#af-submit').click();
  const row = page.locator('#alerts-table tbody tr').first();
  await row.waitFor({ state: 'visible' });
  const alertId = Number(await row.getAttribute('data-alert'));
  await page.waitForFunction(() => document.querySelector('#chart').dataset.alertLines === '1');

  step('drag the alert line and confirm');
  const box = await page.locator('#chart').boundingBox();
  const y = await page.evaluate((p) => window.tickwatchPage.priceToY(p), Number(level));
  if (y == null) throw new Error('the alert line is not on the price scale');
  const x = box.x + box.width * 0.5;
  await page.mouse.move(x, box.y + y);
  await page.mouse.down();
  await page.mouse.move(x, box.y + y - 20, { steps: 4 });
  await page.mouse.move(x, box.y + y - 40, { steps: 4 });
  await page.mouse.up();
  await page.locator('#confirm').waitFor({ state: 'visible' });
  const question = await page.locator('#confirm-text').textContent();
  await page.locator('#confirm-yes').click();
  await page.waitForFunction((lvl) => {
    const cell = document.querySelector('#alerts-table tbody tr td:nth-child(4)');
    return cell && cell.textContent.replaceAll(',', '') !== lvl;
  }, level);
  const movedTo = (await page.locator('#alerts-table tbody tr td:nth-child(4)').first().textContent()).replaceAll(',', '');

  step('a tick through the broker moves the last candle');
  await page.locator('#live[data-state="live"]').waitFor();
  say({ need: 'tick' });
  const { ticked } = await hear();
  await page.waitForFunction((p) => Number(document.querySelector('#chart').dataset.lastClose) === Number(p), ticked);
  const barsAfterTick = Number(await page.locator('#chart').getAttribute('data-bars'));

  step('the stream comes back after a drop');
  await page.evaluate(() => window.tickwatchPage.dropStream());
  await page.locator('#live[data-state="reconnecting"]').waitFor();
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 15000 });

  await page.screenshot({ path: path.join(process.env.TW_SCREENSHOTS, 'dashboard.png'), fullPage: true });

  step('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => [...document.querySelectorAll('#chart canvas')]
    .every((c) => c.getBoundingClientRect().right <= window.innerWidth));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) problems.push(`the page is ${overflow}px wider than a phone`);
  await page.screenshot({ path: path.join(process.env.TW_SCREENSHOTS, 'dashboard-phone.png'), fullPage: true });

  step('English, then sign out');
  await page.locator('#lang').click();
  const heading = await page.locator('[data-i18n="my_alerts"]').textContent();
  // What the switch reloads is answered before the session ends (or it would be a 401).
  await page.waitForFunction(() => document.body.dataset.busy === '0');
  await page.locator('#signout').click();
  await page.locator('#signin').waitFor({ state: 'visible' });

  say({ done: { title, bars, markers, signalRows, barsAfterTick, lastClose, alertId, level, movedTo, question, heading, inked, problems } });
} catch (e) {
  say({ failed: `${e.stack || e}`, problems });
} finally {
  await browser.close();
  // stdin stays open while the test waits: leave without waiting for it.
  process.exit(0);
}
