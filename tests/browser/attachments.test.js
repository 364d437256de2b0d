// Files on the referral form end to end: chosen in Debian's Chromium's file
// input, sent as multipart/form-data, stored with the referral, and found
// byte for byte (by SHA-256) in the office's real email (aiosmtpd's Maildir,
// read with Python's email module); a refused file named next to the input
// with the form's values and the good files kept; an oversized file's
// message. Screenshots go to the build's test-artifacts/.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Daemon, MailServer, TEST_TIMEOUT, newPage, screenshot, useDaemonAndBrowser } = require('./support');
const { assertClean, fields, fillReferral, submit, submitToConfirmation } = require('./referral_form');

const mail = new MailServer();
// One file may be 2,600 bytes here: the TIFF fixture (2,706) is over it.
const daemon = new Daemon({
  mail,
  extraConfig: `
[intake]
max_attachments = 4
max_attachment_bytes = 2600
max_attachments_total_bytes = 10000
`,
});
let browser;
useDaemonAndBrowser(daemon, (b) => {
  browser = b;
});

const fixtures = path.join(__dirname, '..', 'data', 'attachments');
const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// An executable (an ELF header and some bytes) named like a PDF.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'referrald-browser-files-'));
const executable = path.join(work, 'setup.pdf');
fs.writeFileSync(executable, Buffer.concat([Buffer.from('7f454c46020101000000000000000000', 'hex'), Buffer.alloc(600, 0x90)]));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const fileInput = (page) => page.getByLabel('Pathology report, imaging reports or other records', { exact: true });

test('a PDF and a JPEG chosen on the form reach the office\'s email byte for byte', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  await fillReferral(page, { familyName: 'Files-Browser' });
  const pdf = path.join(fixtures, 'records.pdf');
  const jpeg = path.join(fixtures, 'image.jpg');
  await fileInput(page).setInputFiles([pdf, jpeg]);
  const reference = await submitToConfirmation(page);

  const message = await mail.messageFileWith(reference);
  const parts = MailServer.parts(message);
  const sums = parts.map((p) => p.sha256);
  assert.ok(sums.includes(sha256(pdf)), `the PDF is in the email: ${JSON.stringify(parts)}`);
  assert.ok(sums.includes(sha256(jpeg)), `the JPEG is in the email: ${JSON.stringify(parts)}`);
  assert.deepEqual(parts.filter((p) => p.sha256 === sha256(jpeg)).map((p) => p.type), ['image/jpeg']);
  const stored = daemon.filesOf(reference);
  assert.deepEqual(stored.map((f) => [f.title, f.content_type, f.sha256]), [
    ['records.pdf', 'application/pdf', sha256(pdf)],
    ['image.jpg', 'image/jpeg', sha256(jpeg)],
  ]);
  assertClean(page);
  await page.context().close();
});

test('an executable named .pdf is refused by name; the values and the good file are kept', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  await fillReferral(page, { familyName: 'Refused-Browser', npi: '1234567890' });
  const pdf = path.join(fixtures, 'records.pdf');
  await fileInput(page).setInputFiles([pdf, executable]);
  const response = await submit(page);
  assert.equal(response.status(), 422);

  const message = 'Attachment 2 (setup.pdf) is not a PDF, JPEG, PNG or TIFF file (decided from its bytes, not its '
    + 'name or declared type).';
  const summary = page.getByRole('alert');
  const link = summary.getByRole('link', { name: message, exact: true });
  assert.equal(await link.getAttribute('href'), '#attachments');
  assert.equal((await page.locator('#attachments-error').textContent()).trim(), `Error: ${message}`);
  const input = fileInput(page);
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.ok((await input.getAttribute('aria-describedby')).split(' ').includes('attachments-error'));
  // The summary's link moves focus to the file input.
  await link.click();
  assert.ok(await input.evaluate((el) => el === document.activeElement));
  // The form's values are kept, and the good file is listed as held.
  assert.equal(await fields(page).familyName.inputValue(), 'Refused-Browser');
  const held = page.locator('#held-files');
  assert.match(await held.innerText(), /records\.pdf \(PDF, 910 bytes\)/);
  assert.doesNotMatch(await held.innerText(), /setup\.pdf/);
  await screenshot(page, 'form-file-refused.png');

  // The NPI corrected, sent again without choosing any file: stored with the held PDF.
  await fields(page).npi.fill('1234567893');
  const reference = await submitToConfirmation(page);
  assert.deepEqual(daemon.filesOf(reference).map((f) => [f.title, f.sha256]), [['records.pdf', sha256(pdf)]]);
  assertClean(page);
  await page.context().close();
});

test('a held file can be removed before sending', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  await fillReferral(page, { familyName: 'Removed-Browser', email: '' });
  await fileInput(page).setInputFiles([path.join(fixtures, 'records.pdf'), path.join(fixtures, 'image.png')]);
  assert.equal((await submit(page)).status(), 422);
  await page.getByRole('checkbox', { name: 'Remove image.png', exact: true }).check();
  await fields(page).email.fill('dwhitfield@example.org');
  const reference = await submitToConfirmation(page);
  assert.deepEqual(daemon.filesOf(reference).map((f) => f.title), ['records.pdf']);
  await page.context().close();
});

test('an oversized file gets the limit in its message', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  await fillReferral(page, { familyName: 'Oversized-Browser' });
  await fileInput(page).setInputFiles([path.join(fixtures, 'image.tif')]);
  const response = await submit(page);
  assert.equal(response.status(), 422);
  assert.equal((await page.locator('#attachments-error').textContent()).trim(),
    'Error: Attachment 1 (image.tif) is 2.6 kB, larger than the 2.5 kB one file may be.');
  assert.equal(await page.locator('#held-files').count(), 0);
  assert.equal(daemon.referralsOfFamily('Oversized-Browser').length, 0);
  assertClean(page);
  await page.context().close();
});
