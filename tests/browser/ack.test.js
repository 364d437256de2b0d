// The one-tap acknowledgement link end to end: the real daemon sends the
// office's email to aiosmtpd (tests/peers/smtp_server.py); the test takes the
// link out of the message in its Maildir and opens it in Debian's Chromium;
// the store is read back with sqlite3. An expired link cannot come from a
// fresh email: that one is issued into the store as the dispatcher issues
// them (only the token's SHA-256 kept). Screenshots go to the build's
// test-artifacts/.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Daemon, MailServer, TEST_TIMEOUT, newPage, screenshot, useDaemonAndBrowser } = require('./support');

const mail = new MailServer();
// An urgent referral's ladder: one step an hour after receipt (it must not
// fire during the test; acknowledging stops it).
const daemon = new Daemon({
  mail,
  extraConfig: `
[[escalation]]
urgency = ["urgent", "emergent"]
steps = [ { after = "1h", notify = ["office-email"] } ]
`,
});
let browser;
useDaemonAndBrowser(daemon, (b) => {
  browser = b;
});

const DAY = 24 * 3600 * 1000;

const sample = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'data', 'asps-urgent.json'), 'utf8'));

// A stored urgent referral (its ladder planned by intake) and the one-tap
// link from the office's email about it.
async function referralAndItsLink(familyName) {
  const body = structuredClone(sample);
  body.patient.family_name = familyName;
  const { id } = await daemon.postReferral(body);
  const message = await mail.messageWith(id);
  const link = message.match(new RegExp(`${daemon.baseUrl}/ack/[A-Za-z0-9_-]{43}`));
  assert.ok(link, `the office's email about ${id} carries the one-tap link:\n${message}`);
  return { id, link: link[0] };
}

function stateOf(id) {
  const [referral] = daemon.query(`SELECT status FROM referrals WHERE id = '${id}'`);
  const [ladder] = daemon.query(`SELECT state FROM escalations WHERE referral_id = '${id}' AND step = 1`);
  const [token] = daemon.query(`SELECT count(*) AS used FROM ack_tokens WHERE referral_id = '${id}' AND used_ms IS NOT NULL`);
  const changes = daemon.query(`SELECT actor, via, to_status FROM status_changes WHERE referral_id = '${id}'`);
  return { status: referral.status, ladder: ladder.state, usedTokens: token.used, changes };
}

function assertClean(page) {
  assert.deepEqual(page.foreignRequests(), [], 'nothing is loaded from elsewhere');
  assert.deepEqual(page.problems, [], 'no console errors, CSP violations or dialogs');
}

test('opening the link shows the reference number and a button, and acknowledges nothing', TEST_TIMEOUT, async () => {
  const { id, link } = await referralAndItsLink('Ack-Open');
  const page = await newPage(browser, daemon.baseUrl);
  // Opened twice, as a mail scanner and then a person would.
  for (let i = 0; i < 2; i++) {
    const response = await page.goto(link);
    assert.equal(response.status(), 200);
  }
  await page.getByRole('heading', { name: 'Acknowledge this referral', level: 1 }).waitFor();
  assert.equal((await page.locator('#reference').textContent()).trim(), id);
  await page.getByRole('button', { name: 'Acknowledge' }).waitFor();
  const text = await page.locator('main').innerText();
  assert.ok(!text.includes('Ack-Open') && !text.includes(sample.patient.birth_date), 'no patient data on the page');
  await screenshot(page, 'ack-page.png');

  assert.deepEqual(stateOf(id), { status: 'received', ladder: 'pending', usedTokens: 0, changes: [] });
  assertClean(page);
  await page.context().close();
});

test('pressing Acknowledge acknowledges the referral and stops its ladder; the link is then used', TEST_TIMEOUT, async () => {
  const { id, link } = await referralAndItsLink('Ack-Press');
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(link);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Acknowledge' }).click(),
  ]);
  assert.equal(response.status(), 200);
  await page.getByRole('heading', { name: 'Referral acknowledged', level: 1 }).waitFor();
  assert.equal((await page.locator('#reference').textContent()).trim(), id);
  assert.match(await page.locator('main').innerText(), /its escalation has stopped/);
  await screenshot(page, 'ack-done.png');

  assert.deepEqual(stateOf(id), {
    status: 'acknowledged',
    ladder: 'stopped',
    usedTokens: 1,
    changes: [{ actor: 'link', via: 'link', to_status: 'acknowledged' }],
  });

  // The link again: it says it was used, and when.
  const again = await page.goto(link);
  assert.equal(again.status(), 410);
  await page.getByRole('heading', { name: 'This link was already used', level: 1 }).waitFor();
  assert.match(await page.locator('main').innerText(), /was used on \d{4}-\d{2}-\d{2} \d{2}:\d{2} /);
  await screenshot(page, 'ack-used.png');
  assert.equal(stateOf(id).changes.length, 1);
  await page.context().close();
});

test('an expired link says so and records nothing', TEST_TIMEOUT, async () => {
  const { id } = await referralAndItsLink('Ack-Expired');
  const link = daemon.issueAckLink(id, DAY, Date.now() - 8 * DAY);
  const page = await newPage(browser, daemon.baseUrl);
  const response = await page.goto(link);
  assert.equal(response.status(), 410);
  await page.getByRole('heading', { name: 'This link has expired', level: 1 }).waitFor();
  assert.match(await page.locator('main').innerText(), new RegExp(id));
  await screenshot(page, 'ack-expired.png');
  assert.deepEqual(stateOf(id), { status: 'received', ladder: 'pending', usedTokens: 0, changes: [] });
  await page.context().close();
});
