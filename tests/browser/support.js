// The real referrald binary on a free loopback port with a configuration of
// its own, Debian's Chromium driven by playwright-core, and the store read
// with the sqlite3 command-line tool (the test checks the file, not our code)
// and, for the documents referrald encrypts at rest, with referralctl.
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
// playwright-core only when a browser is launched: tests/fhir starts its
// daemon with this file and has no browser.
function chromium() {
  try {
    return require('playwright-core').chromium;
  } catch {
    throw new Error('playwright-core is missing: run `npm install --no-audit --no-fund` in tests/browser (scripts/test does)');
  }
}

const sourceDir = process.env.REFERRALD_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const binary = process.env.REFERRALD_BINARY || path.join(sourceDir, 'build', 'debug', 'daemon', 'referrald');
const referralctl = process.env.REFERRALCTL_BINARY || path.join(path.dirname(path.dirname(binary)), 'cli', 'referralctl');
const artifactsDir =
  process.env.REFERRALD_ARTIFACTS || path.join(path.dirname(path.dirname(binary)), 'test-artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const API_TOKEN = 'browser-test-token';
const OFFICE = { phone: '1-888-226-4343', fax: '901-595-4011', pager: '1-800-349-4334' };

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The status of a GET, or 0 when nothing answers. No keep-alive: an idle
// pooled socket would hold the test process open after the last test.
function status(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

// tests/peers/smtp_server.py (Debian's aiosmtpd) on a free port, without
// TLS or AUTH: every message it takes lands in a Maildir the test reads.
class MailServer {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'referrald-browser-mail-'));
    this.maildir = path.join(this.dir, 'Maildir');
    this.child = null;
  }

  async start() {
    this.port = await freePort();
    const script = path.join(sourceDir, 'tests', 'peers', 'smtp_server.py');
    this.child = spawn('/usr/bin/python3', [script, '--port', String(this.port), '--maildir', this.maildir],
      { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('smtp_server.py did not become ready within 15 s')), 15000);
      this.child.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.includes('READY')) {
          clearTimeout(timer);
          resolve();
        }
      });
      this.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`smtp_server.py exited with ${code}`));
      });
    });
  }

  // The text of every message received so far, quoted-printable soft line
  // breaks joined (a long link is folded in the message).
  messages() {
    const dir = path.join(this.maildir, 'new');
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).map((name) => fs.readFileSync(path.join(dir, name), 'utf8').replace(/=\r?\n/g, ''));
  }

  // Waits (up to 30 s) for a message that mentions `text`.
  async messageWith(text) {
    return fs.readFileSync(await this.messageFileWith(text), 'utf8').replace(/=\r?\n/g, '');
  }

  // The Maildir file of the first message (up to 30 s) that mentions `text`.
  async messageFileWith(text) {
    const dir = path.join(this.maildir, 'new');
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
      const found = names.find((name) =>
        fs.readFileSync(path.join(dir, name), 'utf8').replace(/=\r?\n/g, '').includes(text));
      if (found) return path.join(dir, found);
      await sleep(50);
    }
    throw new Error(`no message mentioning ${text} arrived within 30 s`);
  }

  // Each leaf part of a stored message as Python's email module decodes it
  // (an independent MIME reader): its type, file name and the SHA-256 of its bytes.
  static parts(file) {
    const script = [
      'import email, email.policy, hashlib, json, sys',
      "msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)",
      'print(json.dumps([{"type": p.get_content_type(), "filename": p.get_filename(),',
      '  "sha256": hashlib.sha256(p.get_payload(decode=True) or b"").hexdigest()}',
      '  for p in msg.walk() if not p.is_multipart()]))',
    ].join('\n');
    return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, file], { encoding: 'utf8' }));
  }

  stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

class Daemon {
  // options.mail: a MailServer (useDaemonAndBrowser starts it before the
  // daemon and stops it after); the office's email then goes there
  // by SMTP (and carries the one-tap acknowledgement link) instead of into a
  // spool directory. options.extraConfig: more TOML at the end;
  // options.extraHttp: more lines for [http].
  constructor(options = {}) {
    this.options = options;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'referrald-browser-'));
    this.database = path.join(this.dir, 'var', 'referrald.db');
    this.child = null;
  }

  async start() {
    this.port = await freePort();
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    fs.mkdirSync(path.dirname(this.database), { recursive: true });
    const keyHash = crypto.createHash('sha256').update(API_TOKEN).digest('hex');
    // Referral documents are encrypted at rest, as in production.
    const keyFile = path.join(this.dir, 'encryption-keys');
    fs.writeFileSync(keyFile, `browser-1 ${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const config = `
[http]
listen = "127.0.0.1:${this.port}"
api_keys = ["sha256:${keyHash}"]
${this.options.extraHttp || ''}

[storage]
database = "${this.database}"
encryption_keys = "${keyFile}"

[rules]
file = "${path.join(sourceDir, 'config', 'rules.toml')}"

[paths]
schemas = "${path.join(sourceDir, 'schemas')}"
web = "${path.join(sourceDir, 'web')}"

[office]
phone = "${OFFICE.phone}"
fax = "${OFFICE.fax}"
pager = "${OFFICE.pager}"

${this.options.mail ? `[[target]]
name = "office-email"
type = "smtp"
url = "smtp://127.0.0.1:${this.options.mail.port}"
starttls = "none"
allow_plaintext = true
from = "referrald@hospital.example"
to = ["referrals@hospital.example"]` : `[[target]]
name = "office-email"
type = "spool"
directory = "spool/office-email"`}

[[route]]
notify = ["office-email"]
${this.options.extraConfig || ''}`;
    this.configFile = path.join(this.dir, 'referrald.toml');
    fs.writeFileSync(this.configFile, config);
    this.logFile = path.join(this.dir, 'daemon.log');
    const log = fs.openSync(this.logFile, 'a');
    // Its own process group, so that stop() reaches everything it started.
    this.child = spawn(binary, ['--config', this.configFile], { detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`referrald exited during start-up:\n${this.log()}`);
      if ((await status(`${this.baseUrl}/healthz`)) === 200) return;
      await sleep(25);
    }
    throw new Error(`referrald did not become healthy within 15 s:\n${this.log()}`);
  }

  log() {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  // SIGTERM, then SIGKILL after 10 s; resolves to how it exited ({code, signal}).
  async stop() {
    if (!this.child) return null;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), 10000);
    });
    const done = await Promise.race([this.exited, timeout]);
    clearTimeout(timer); // else the pending timer holds the test process open
    if (done !== null) return done;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    return this.exited;
  }

  // Synchronous last resort for process exit: never leave a daemon behind.
  kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  removeDir() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // Rows from the store, read by the sqlite3 CLI (read-only).
  query(sql) {
    const out = execFileSync('sqlite3', ['-readonly', '-json', this.database, sql], { encoding: 'utf8' });
    return out.trim() === '' ? [] : JSON.parse(out);
  }

  // Referrals matching `condition` (SQL over the plain columns) with their
  // documents, which referrald stores encrypted: referralctl reads them back.
  referralsWhere(condition) {
    return this.query(`SELECT id, channel, decision, urgency FROM referrals WHERE ${condition} ORDER BY received_ms`).map(
      (row) => {
        const args = ['--config', this.configFile, 'show', '--json', row.id];
        const shown = execFileSync(referralctl, args, { encoding: 'utf8' });
        return { ...row, document: JSON.parse(shown).referral.document };
      },
    );
  }

  // The files stored with a referral, as `referralctl show --json` lists them.
  filesOf(id) {
    const shown = execFileSync(referralctl, ['--config', this.configFile, 'show', '--json', id], { encoding: 'utf8' });
    return JSON.parse(shown).attachments;
  }

  // Runs a statement on the store with the sqlite3 CLI (read-write).
  exec(sql) {
    execFileSync('sqlite3', ['-cmd', '.timeout 5000', this.database, sql], { encoding: 'utf8' });
  }

  // POSTs a referral to the JSON API; resolves to the parsed 202 body.
  postReferral(body) {
    return new Promise((resolve, reject) => {
      const data = Buffer.from(JSON.stringify(body));
      const req = http.request(`${this.baseUrl}/api/v1/referrals`, {
        method: 'POST',
        agent: false,
        headers: { Authorization: `Bearer ${API_TOKEN}`, 'Content-Type': 'application/json', 'Content-Length': data.length },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => (res.statusCode === 202 ? resolve(JSON.parse(text)) : reject(new Error(`${res.statusCode} ${text}`))));
      });
      req.on('error', reject);
      req.end(data);
    });
  }

  // An acknowledgement link for `referralId`, as the dispatcher issues one:
  // 32 random bytes in base64url, only the SHA-256 of its text stored,
  // valid for `ttlMs` from `issuedMs` (a ttl in the past: an expired link).
  issueAckLink(referralId, ttlMs, issuedMs = Date.now()) {
    const token = crypto.randomBytes(32).toString('base64url');
    const hash = crypto.createHash('sha256').update(token).digest('hex');
    this.exec(`INSERT INTO ack_tokens (token_hash, referral_id, created_ms, expires_ms) VALUES ('${hash}', '${referralId}', ${issuedMs}, ${issuedMs + ttlMs})`);
    return `${this.baseUrl}/ack/${token}`;
  }

  referralsOfFamily(familyName) {
    return this.referralsWhere('1').filter((row) => row.document.patient.family_name === familyName);
  }
}

async function launchBrowser() {
  return chromium().launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

// A page that records every request and every console error, so a test can
// check that nothing is loaded from elsewhere and nothing breaks the CSP.
async function newPage(browser, baseUrl, options = {}) {
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  page.requests = [];
  page.problems = [];
  page.on('request', (r) => page.requests.push(r.url()));
  page.on('console', (m) => {
    // A page answered with 403 or 422 is logged as a failed load; the tests check those statuses themselves.
    if (m.type() === 'error' && !/^Failed to load resource: .* status of (403|409|422) /.test(m.text())) {
      page.problems.push(`console: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => {
    page.problems.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.foreignRequests = () => page.requests.filter((u) => !u.startsWith(`${baseUrl}/`));
  return page;
}

async function screenshot(page, name) {
  fs.mkdirSync(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// A server on another site ("localhost" is not the same site as 127.0.0.1)
// whose page posts a referral to referrald: a cross-site request forgery.
async function startForgerySite(targetUrl, fields) {
  const port = await freePort();
  const inputs = Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${v}">`)
    .join('\n');
  const page = `<!doctype html><title>Win a prize</title>
<form method="post" action="${targetUrl}">${inputs}<button type="submit">Claim</button></form>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://localhost:${port}/`, close: () => new Promise((resolve) => server.close(resolve)) };
}

// One daemon and one browser for a test file: started before its first test;
// after its last, both stop, and the daemon must exit cleanly on SIGTERM
// (under the sanitizers: also no memory errors or leaks). `onBrowser`
// receives the browser once it runs.
// Before the file's tests: the daemon's mail server (options.mail), the
// daemon and a browser; after them, the same stopped, the daemon cleanly.
function useDaemonAndBrowser(daemon, onBrowser) {
  const { before, after } = require('node:test');
  const assert = require('node:assert/strict');
  const mail = daemon.options.mail;
  let browser;
  process.on('exit', () => daemon.kill());
  before(async () => {
    if (mail) await mail.start();
    await daemon.start();
    browser = await launchBrowser();
    onBrowser(browser);
  });
  after(async () => {
    if (browser) await browser.close();
    const exit = await daemon.stop();
    const log = daemon.log();
    daemon.removeDir();
    if (mail) await mail.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, `referrald did not stop cleanly:\n${log}`);
  });
}

// Every browser test's bound: a minute (a test waits for the daemon, the
// browser and sometimes an email).
const TEST_TIMEOUT = { timeout: 60000 };

module.exports = {
  MailServer,
  useDaemonAndBrowser,
  TEST_TIMEOUT,
  API_TOKEN,
  OFFICE,
  Daemon,
  artifactsDir,
  launchBrowser,
  newPage,
  screenshot,
  sleep,
  startForgerySite,
};
