// The referral form end to end: the real daemon, Debian's Chromium, the
// store read back with sqlite3. Screenshots go to the build's test-artifacts/.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Daemon, OFFICE, TEST_TIMEOUT, newPage, screenshot, sleep, startForgerySite, useDaemonAndBrowser } = require('./support');
const { assertClean, fields, fillReferral, submit, submitToConfirmation } = require('./referral_form');

const daemon = new Daemon();
let browser;
useDaemonAndBrowser(daemon, (b) => {
  browser = b;
});

const REFERENCE = /^R-\d{8}-[0-9A-Z]{5}-[0-9A-Z]{5}$/;

test('a valid referral shows its reference number and is in the store', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  const response = await page.goto(`${daemon.baseUrl}/`);
  assert.equal(response.status(), 200);
  assert.equal(await page.title(), 'Refer a patient – Physician/Patient Referral Office');
  await screenshot(page, 'form-empty.png');

  const v = await fillReferral(page, { familyName: 'Valid-Browser' });
  const reference = await submitToConfirmation(page);
  assert.match(reference, REFERENCE);
  assert.equal(new URL(page.url()).pathname, `/referrals/${reference}`, 'only the reference number is in the URL');
  await assert.doesNotReject(page.getByRole('heading', { name: 'Referral sent', level: 1 }).waitFor());
  const text = await page.locator('main').innerText();
  assert.match(text, /The referral office will contact you\./);
  assert.match(text, /Received; the referral office has not reviewed it yet\./, 'the office\'s status in plain words');
  for (const contact of [OFFICE.phone, OFFICE.fax, OFFICE.pager]) assert.ok(text.includes(contact), contact);
  assert.ok(!text.includes(v.familyName) && !text.includes(v.birthDate), 'no patient data on the confirmation');
  await screenshot(page, 'confirmation.png');

  const rows = daemon.referralsWhere(`id = '${reference}'`);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].channel, 'form');
  assert.equal(rows[0].decision, 'accepted');
  assert.deepEqual(rows[0].document, {
    patient: {
      given_name: 'Ava', family_name: 'Valid-Browser', birth_date: '2014-03-09', sex: 'female', postal_code: '72401',
      guardian: { name: 'Linh Nguyen', phone: '+1 901 555 0142', relationship: 'mother' },
    },
    diagnosis: {
      name: 'Alveolar soft part sarcoma', code: { system: 'icd-o-3', value: '9581/3' }, diagnosed_on: '2024-10-02',
      pathology_confirmed: true,
    },
    referrer: {
      name: 'Dana Whitfield', credential: 'MD', npi: '1234567893', organization: 'Delta Pediatrics',
      phone: '+1 901 555 0100', fax: '+1 901 555 0101', email: 'dwhitfield@example.org',
    },
    urgency: 'routine',
    notes: 'MRI and pathology report available on request.',
  });
  assertClean(page);
  await page.context().close();
});

test('invalid input: 422, a summary linking to each field, each message by its field, every value kept', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  const typed = await fillReferral(page, {
    givenName: '<script>alert(1)</script>',
    familyName: 'Errors-Browser',
    birthDate: '2999-01-01',
    npi: '1234567890',
    email: '',
    guardianRelationship: '',
    notes: 'First line\nsecond line',
  });
  const response = await submit(page);
  assert.equal(response.status(), 422);
  assert.match(await page.title(), /^Error: /);

  const expected = {
    'patient-birth_date': "Patient's date of birth must not be in the future.",
    'patient-guardian-relationship': "Parent or guardian's relationship to the patient is required.",
    'referrer-npi': 'NPI is not a valid NPI: check digit does not match.',
    'referrer-email': 'Email address is required.',
  };
  const summary = page.getByRole('alert');
  await summary.waitFor();
  assert.match(await summary.innerText(), /has not been sent: 4 fields need your attention/);
  const links = summary.getByRole('link');
  assert.equal(await links.count(), 4);
  for (const [id, message] of Object.entries(expected)) {
    const link = summary.getByRole('link', { name: message, exact: true });
    assert.equal(await link.getAttribute('href'), `#${id}`);
    // The message next to its field, and tied to it for screen readers.
    const fieldMessage = page.locator(`#${id}-error`);
    assert.equal((await fieldMessage.textContent()).trim(), `Error: ${message}`);
    const input = page.locator(`#${id}`);
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    assert.ok((await input.getAttribute('aria-describedby')).split(' ').includes(`${id}-error`));
    assert.ok(
      await fieldMessage.evaluate((el, inputId) => el.closest('.field').contains(document.getElementById(inputId)), id),
      `the message for ${id} is inside its field`,
    );
  }
  // The script enhancement puts focus on the summary; its links move focus to the field.
  assert.ok(await summary.evaluate((el) => el === document.activeElement));
  await screenshot(page, 'form-errors.png');
  await summary.getByRole('link', { name: expected['referrer-npi'] }).click();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'referrer-npi');

  // Every value kept, the script in the name shown as text and never run.
  const f = fields(page);
  for (const key of ['givenName', 'familyName', 'birthDate', 'postalCode', 'guardianName', 'guardianPhone',
    'guardianRelationship', 'diagnosis', 'code', 'diagnosedOn', 'referrerName', 'npi', 'organization', 'phone',
    'fax', 'email', 'notes']) {
    assert.equal(await f[key].inputValue(), typed[key], key);
  }
  assert.ok(await f.sex('Female').isChecked());
  assert.ok(await f.urgency('Routine').isChecked());
  assert.ok(await f.pathologyConfirmed.isChecked());
  assert.equal(await f.codeSystem.inputValue(), 'icd-o-3');
  assert.equal(await f.credential.inputValue(), 'MD');
  assert.equal(daemon.referralsOfFamily('Errors-Browser').length, 0);

  // Fix the fields and send: one referral, with the name exactly as typed.
  await f.birthDate.fill('2014-03-09');
  await f.npi.fill('1234567893');
  await f.email.fill('dwhitfield@example.org');
  await f.guardianRelationship.fill('mother');
  const reference = await submitToConfirmation(page);
  const rows = daemon.referralsOfFamily('Errors-Browser');
  assert.deepEqual(rows.map((r) => r.id), [reference]);
  assert.equal(rows[0].document.patient.given_name, '<script>alert(1)</script>');
  assert.equal(rows[0].document.notes, 'First line\nsecond line');
  assertClean(page);
  await page.context().close();
});

test('markup typed into every text field stays text: no dialog, no injected element', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  const injected = '[onerror], [onload], [onfocus], [autofocus], a[href^="javascript:"]';
  const count = (selector) => page.locator(selector).count();
  const blank = { script: await count('script'), img: await count('img'), svg: await count('svg') };
  const hostile = {
    givenName: '<script>alert(1)</script>',
    familyName: '"><img src=x onerror=alert(1)>Markup-Browser',
    guardianName: "'><svg onload=alert(1)>",
    guardianRelationship: '" autofocus onfocus="alert(5)',
    referrerName: '{{csrf}} {{v:referrer.npi}}',
    organization: '</textarea><script>alert(2)</script>',
    notes: '</textarea><img src=x onerror=alert(4)>{{summary}}',
  };
  await fillReferral(page, { ...hostile, npi: '1234567890' });
  const response = await submit(page);
  assert.equal(response.status(), 422);
  await page.getByRole('alert').waitFor();
  assert.deepEqual(
    { script: await count('script'), img: await count('img'), svg: await count('svg') },
    blank,
    'no element came from a value',
  );
  assert.equal(await count(injected), 0, 'no handler or autofocus came from a value');
  const f = fields(page);
  for (const [key, value] of Object.entries(hostile)) assert.equal(await f[key].inputValue(), value, key);
  await f.npi.fill('1234567893');
  const reference = await submitToConfirmation(page);
  assert.equal(await count(injected), 0);
  assert.equal(await count('img'), 0);
  const text = await page.locator('main').innerText();
  assert.ok(!text.includes('Markup-Browser') && !text.includes('alert('), 'no patient data on the confirmation');
  const rows = daemon.referralsWhere(`id = '${reference}'`);
  assert.equal(rows[0].document.patient.family_name, hostile.familyName);
  assert.equal(rows[0].document.notes, hostile.notes);
  assertClean(page);  // no dialog, console error or CSP violation
  await page.context().close();
});

test('a post without the CSRF token is refused', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  await fillReferral(page, { familyName: 'Csrf-Browser' });
  await page.locator('input[name="csrf_token"]').evaluate((el) => el.remove());
  const response = await submit(page);
  assert.equal(response.status(), 403);
  await page.getByRole('heading', { name: 'The referral was not sent' }).waitFor();
  assert.match(await page.locator('main').innerText(), /Nothing was stored/);

  // Another site posting to the form: the cookie stays home (SameSite=Strict),
  // even with a token copied from a real form page.
  const token = await (async () => {
    await page.goto(`${daemon.baseUrl}/`);
    return page.locator('input[name="csrf_token"]').inputValue();
  })();
  const forgery = await startForgerySite(`${daemon.baseUrl}/referrals`, {
    csrf_token: token,
    submission_token: 'a'.repeat(64),
    'patient.given_name': 'Mallory',
    'patient.family_name': 'Csrf-Browser',
    urgency: 'emergent',
  });
  try {
    await page.goto(forgery.url);
    const [forged] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/referrals')),
      page.getByRole('button', { name: 'Claim' }).click(),
    ]);
    assert.equal(forged.status(), 403);
  } finally {
    await forgery.close();
  }
  assert.equal(daemon.referralsOfFamily('Csrf-Browser').length, 0);
  await page.context().close();
});

test('keyboard alone: fill, choose and send', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  const kb = page.keyboard;
  // Presses Tab until focus reaches the element, in page order.
  const tabTo = async (id) => {
    for (let i = 0; i < 12; i++) {
      await kb.press('Tab');
      if ((await page.evaluate(() => document.activeElement && document.activeElement.id)) === id) return;
    }
    assert.fail(`Tab never reached #${id}`);
  };
  const type = async (id, text) => {
    await tabTo(id);
    await kb.type(text);
  };

  await tabTo('patient-given_name');
  // Focus is visible: a thick outline on the focused control.
  const outline = await page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return { style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
  });
  assert.notEqual(outline.style, 'none');
  assert.ok(outline.width >= 2, `outline ${outline.width}px`);
  await kb.type('Kai');
  await type('patient-family_name', 'Keyboard-Browser');
  await tabTo('patient-birth_date');
  await kb.type('03092014'); // en-US: month, day, year
  await tabTo('patient-sex-female');
  await kb.press('ArrowRight'); // the arrow keys move through a radio group and choose
  await type('patient-postal_code', '38105');
  await type('diagnosis-name', 'Alveolar soft part sarcoma');
  await tabTo('diagnosis-pathology_confirmed');
  await kb.press('Space');
  await type('referrer-name', 'Dana Whitfield');
  await tabTo('referrer-credential');
  await kb.type('DO'); // type-ahead in a closed select
  await type('referrer-npi', '1234567893');
  await type('referrer-organization', 'Delta Pediatrics');
  await type('referrer-phone', '+1 901 555 0100');
  await type('referrer-email', 'dwhitfield@example.org');
  await tabTo('urgency-routine');
  await kb.press('ArrowDown');
  await kb.press('ArrowDown');
  await type('notes', 'Typed without a mouse.');
  await tabTo('attachments'); // the file input (no file chosen), then the button
  await kb.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Send referral');
  await Promise.all([page.waitForURL(/\/referrals\/R-/), kb.press('Enter')]);
  const reference = (await page.locator('#reference').textContent()).trim();
  assert.match(reference, REFERENCE);
  // Emergent: the confirmation says to call the 24-hour line now.
  const notice = page.getByRole('alert');
  assert.match(await notice.innerText(), /call the 24-hour line now/i);
  assert.ok((await notice.innerText()).includes(OFFICE.pager));
  await screenshot(page, 'confirmation-emergent.png');

  const [row] = daemon.referralsWhere(`id = '${reference}'`);
  assert.equal(row.urgency, 'emergent');
  assert.deepEqual(row.document.patient, {
    given_name: 'Kai', family_name: 'Keyboard-Browser', birth_date: '2014-03-09', sex: 'male', postal_code: '38105',
  });
  assert.equal(row.document.diagnosis.pathology_confirmed, true);
  assert.equal(row.document.referrer.credential, 'DO');
  assert.equal(row.document.notes, 'Typed without a mouse.');
  assertClean(page);
  await page.context().close();
});

for (const javaScriptEnabled of [true, false]) {
  test(`a double click stores one referral (JavaScript ${javaScriptEnabled ? 'on' : 'off'})`, TEST_TIMEOUT, async () => {
    const page = await newPage(browser, daemon.baseUrl, { javaScriptEnabled });
    await page.goto(`${daemon.baseUrl}/`);
    const family = `Double-${javaScriptEnabled ? 'Js' : 'NoJs'}`;
    await fillReferral(page, { familyName: family });
    // Without JavaScript the second click sends a second POST, and Chromium
    // aborts the first navigation for it: wait for the one that lands.
    await fields(page).send.dblclick();
    for (let attempt = 0; ; ++attempt) {
      try {
        await page.waitForURL(/\/referrals\/R-/);
        break;
      } catch (e) {
        if (attempt >= 2 || !String(e.message).includes('ERR_ABORTED')) throw e;
      }
    }
    await page.waitForLoadState('load');
    const reference = (await page.locator('#reference').textContent()).trim();
    await sleep(300); // let a second request, if any, reach the store
    const posts = page.requests.filter((u) => u.endsWith('/referrals')).length;
    assert.ok(posts >= 1);
    const rows = daemon.referralsOfFamily(family);
    assert.deepEqual(rows.map((r) => r.id), [reference], `${posts} POST(s) sent, one referral stored`);
    await page.context().close();
  });
}

test('back and send again, or reload, stores nothing new', TEST_TIMEOUT, async () => {
  const page = await newPage(browser, daemon.baseUrl);
  await page.goto(`${daemon.baseUrl}/`);
  const token = await page.locator('input[name="submission_token"]').inputValue();
  const typed = await fillReferral(page, { familyName: 'Back-Browser' });
  const reference = await submitToConfirmation(page);
  const stored = () => daemon.referralsOfFamily('Back-Browser');

  await page.reload();
  assert.equal((await page.locator('#reference').textContent()).trim(), reference);

  // Back: the browser shows the page it kept, with the same submission token.
  // It does not keep the patient's details (autocomplete=off keeps them out of
  // the browser's memory on a shared computer); the clinician's are restored.
  await page.goBack();
  const f = fields(page);
  await f.send.waitFor();
  assert.equal(await page.locator('input[name="submission_token"]').inputValue(), token);
  assert.equal(await f.familyName.inputValue(), '');
  assert.equal(await f.referrerName.inputValue(), typed.referrerName);
  // Sending it straight away stores nothing; filling it in again and sending
  // shows the first referral again.
  assert.equal((await submit(page)).status(), 422);
  await fillReferral(page, { familyName: 'Back-Browser' });
  assert.equal(await submitToConfirmation(page), reference, 'the same referral, not a second one');
  assert.deepEqual(stored().map((r) => r.id), [reference]);

  // "Refer another patient" starts a new form: a new referral.
  await page.getByRole('link', { name: 'Refer another patient' }).click();
  await fillReferral(page, { familyName: 'Back-Browser' });
  assert.notEqual(await submitToConfirmation(page), reference);
  assert.equal(stored().length, 2);
  assertClean(page);
  await page.context().close();
});

test('usable on a phone-sized screen and at 200 % zoom', TEST_TIMEOUT, async () => {
  const sizes = [
    { name: 'phone', viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
    // 200 % zoom of a 1280 × 900 window: the page lays out in 640 × 450 CSS pixels.
    { name: 'zoom-200', viewport: { width: 640, height: 450 }, deviceScaleFactor: 2 },
  ];
  for (const { name, ...options } of sizes) {
    const page = await newPage(browser, daemon.baseUrl, options);
    await page.goto(`${daemon.baseUrl}/`);
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok((await overflow()) <= 0, `${name}: no sideways scrolling on the form`);
    await screenshot(page, `form-${name}.png`);
    await fillReferral(page, { familyName: `Small-${name}`, npi: '1234567890' });
    assert.equal((await submit(page)).status(), 422);
    assert.ok((await overflow()) <= 0, `${name}: no sideways scrolling with errors`);
    if (name === 'phone') await screenshot(page, 'form-errors-phone.png');
    await fields(page).npi.fill('1234567893');
    await submitToConfirmation(page);
    assert.ok((await overflow()) <= 0, `${name}: no sideways scrolling on the confirmation`);
    // Controls are big enough to hit with a finger.
    await page.goto(`${daemon.baseUrl}/`);
    const smallest = await page.evaluate(() =>
      Math.min(
        ...[...document.querySelectorAll('input[type=text], input[type=tel], input[type=email], select, button')].map(
          (el) => el.getBoundingClientRect().height,
        ),
      ),
    );
    assert.ok(smallest >= 40, `${name}: smallest control ${smallest}px high`);
    assertClean(page);
    await page.context().close();
  }
});
