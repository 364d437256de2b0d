// The referral form as a person uses it, for the browser tests: a complete
// referral's values, every control found by its section and label, filling
// and sending.
'use strict';

const assert = require('node:assert/strict');

// A complete referral as a coordinator would type it (ASPS from Jonesboro, AR).
const VALID = {
  givenName: 'Ava',
  familyName: 'Nguyen',
  birthDate: '2014-03-09',
  sex: 'Female',
  postalCode: '72401',
  guardianName: 'Linh Nguyen',
  guardianPhone: '+1 901 555 0142',
  guardianRelationship: 'mother',
  diagnosis: 'Alveolar soft part sarcoma',
  codeSystem: 'icd-o-3',
  code: '9581/3',
  diagnosedOn: '2024-10-02',
  pathologyConfirmed: true,
  referrerName: 'Dana Whitfield',
  credential: 'MD',
  npi: '1234567893',
  organization: 'Delta Pediatrics',
  phone: '+1 901 555 0100',
  fax: '+1 901 555 0101',
  email: 'dwhitfield@example.org',
  urgency: 'Routine',
  notes: 'MRI and pathology report available on request.',
};

// Every control, found the way a person finds it: by its section and label.
function fields(page) {
  const patient = page.getByRole('group', { name: 'Patient', exact: true });
  const guardian = page.getByRole('group', { name: /^Parent or guardian/ });
  const diagnosis = page.getByRole('group', { name: 'Diagnosis', exact: true });
  const referrer = page.getByRole('group', { name: 'Referring clinician', exact: true });
  const urgency = page.getByRole('group', { name: 'Urgency', exact: true });
  return {
    givenName: patient.getByLabel('Given name', { exact: true }),
    familyName: patient.getByLabel('Family name', { exact: true }),
    birthDate: patient.getByLabel('Date of birth', { exact: true }),
    sex: (value) => patient.getByRole('radio', { name: value, exact: true }),
    postalCode: patient.getByLabel(/^Home ZIP code/),
    guardianName: guardian.getByLabel('Name', { exact: true }),
    guardianPhone: guardian.getByLabel('Phone number', { exact: true }),
    guardianRelationship: guardian.getByLabel('Relationship to the patient', { exact: true }),
    diagnosis: diagnosis.getByLabel('Diagnosis', { exact: true }),
    codeSystem: diagnosis.getByLabel(/^Code system/),
    code: diagnosis.getByLabel(/^Code(?! system)/),
    diagnosedOn: diagnosis.getByLabel(/^Date of diagnosis/),
    pathologyConfirmed: diagnosis.getByLabel('Confirmed by pathology', { exact: true }),
    referrerName: referrer.getByLabel('Name', { exact: true }),
    credential: referrer.getByLabel('Credential', { exact: true }),
    npi: referrer.getByLabel(/^NPI/),
    organization: referrer.getByLabel('Practice or hospital', { exact: true }),
    phone: referrer.getByLabel('Phone number', { exact: true }),
    fax: referrer.getByLabel(/^Fax number/),
    email: referrer.getByLabel('Email address', { exact: true }),
    urgency: (value) => urgency.getByRole('radio', { name: value, exact: true }),
    notes: page.getByLabel('Notes for the referral office', { exact: true }),
    send: page.getByRole('button', { name: 'Send referral' }),
  };
}

async function fillReferral(page, overrides = {}) {
  const v = { ...VALID, ...overrides };
  const f = fields(page);
  for (const key of [
    'givenName', 'familyName', 'birthDate', 'postalCode', 'guardianName', 'guardianPhone',
    'guardianRelationship', 'diagnosis', 'code', 'diagnosedOn', 'referrerName', 'npi', 'organization', 'phone',
    'fax', 'email', 'notes',
  ]) {
    await f[key].fill(v[key]);
  }
  await f.sex(v.sex).check();
  await f.codeSystem.selectOption(v.codeSystem);
  await f.pathologyConfirmed.setChecked(v.pathologyConfirmed);
  await f.credential.selectOption(v.credential);
  await f.urgency(v.urgency).check();
  return v;
}

async function submit(page) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/referrals') && r.request().method() === 'POST'),
    fields(page).send.click(),
  ]);
  await page.waitForLoadState('load');
  return response;
}

async function submitToConfirmation(page) {
  await Promise.all([page.waitForURL(/\/referrals\/R-/), fields(page).send.click()]);
  return (await page.locator('#reference').textContent()).trim();
}

function assertClean(page) {
  assert.deepEqual(page.foreignRequests(), [], 'nothing is loaded from elsewhere');
  assert.deepEqual(page.problems, [], 'no console errors, CSP violations or dialogs');
}

module.exports = { VALID, assertClean, fields, fillReferral, submit, submitToConfirmation };
