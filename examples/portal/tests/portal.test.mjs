// The portal in a real browser (Debian's Chromium, driven by playwright-core)
// against a real slr-governor. The e2e test tests/e2e/tests/e2e/portal.rs
// sets everything up and runs this with `node --test`; it can also be run by
// hand against any server (see README.md).
//
// Environment:
//   PORTAL_URL              the page (dist/ served over HTTP)
//   SLRGOV_URL              the server, as typed into the page
//   PORTAL_OPERATOR_TOKEN   an operator token of tenant A
//   PORTAL_VIEWER_TOKEN     a viewer token of tenant A
//   PORTAL_INSTANCES        tenant A's instance names, comma-separated (all must be listed)
//   PORTAL_HIDDEN           other tenants' instance names (none may be listed)
//   PORTAL_TARGET           the instance (a Connect instance of tenant A) to ensure and retire
//   PORTAL_ARN_PREFIX       how the ensured role's ARN starts
//   CHROMIUM                the browser (default /usr/bin/chromium)
//   PORTAL_ARTIFACTS        where a failing step leaves its screenshot (optional)

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const list = (name) => env(name).split(",").filter(Boolean);

const PORTAL_URL = env("PORTAL_URL");
const SLRGOV_URL = env("SLRGOV_URL");
const TARGET = env("PORTAL_TARGET");
const WAIT_MS = 20_000;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Root in a container: Chromium's sandbox needs user namespaces.
    args: ["--no-sandbox"],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh page (no state carried between tests); a screenshot when `fn` fails. */
async function withPage(name, fn) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  try {
    await page.goto(PORTAL_URL);
    await fn(page);
  } catch (err) {
    if (process.env.PORTAL_ARTIFACTS) {
      const file = path.join(process.env.PORTAL_ARTIFACTS, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`screenshot: ${file}`);
    }
    console.error(`browser console:\n${consoleLines.join("\n")}`);
    throw err;
  } finally {
    await context.close();
  }
}

/** Logs in as a person would: types the server URL and the token, clicks Log in. */
async function logIn(page, token) {
  await page.getByLabel("Server URL").fill(SLRGOV_URL);
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
}

/** Waits until `locator`'s text matches `pattern`; fails with the text it last had. */
async function expectText(locator, pattern) {
  const deadline = Date.now() + WAIT_MS;
  let text = "";
  while (Date.now() < deadline) {
    text = (await locator.textContent()) ?? "";
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`expected ${pattern}, the page shows ${JSON.stringify(text)}`);
}

const rowOf = (page, name) => page.locator(`#instances tbody tr[data-name="${name}"]`);
const alert = (page) => page.getByRole("alert");

test("a garbage token is refused, and the page says so with the gRPC code", async () => {
  await withPage("garbage-token", async (page) => {
    await logIn(page, "not-a-token");
    await expectText(alert(page), /^UNAUTHENTICATED \(16\): .+/);
    assert.match(await alert(page).textContent(), /reason: UNAUTHENTICATED/);
    assert.equal(await page.locator("#instances").isVisible(), false, "no list without a valid token");
  });
});

test("an operator sees tenant A's instances, not tenant B's; ensures a role and retires it", async () => {
  await withPage("operator", async (page) => {
    await logIn(page, env("PORTAL_OPERATOR_TOKEN"));
    await page.getByRole("table").waitFor();
    for (const name of list("PORTAL_INSTANCES")) {
      await rowOf(page, name).waitFor();
    }
    assert.equal(await page.locator("#instances tbody tr").count(), list("PORTAL_INSTANCES").length);
    const visible = await page.locator("body").innerText();
    for (const name of list("PORTAL_HIDDEN")) {
      assert.ok(!visible.includes(name.split("/").pop()), `another tenant's ${name} is shown`);
    }
    assert.equal(await alert(page).isVisible(), false);

    const row = rowOf(page, TARGET);
    await row.getByRole("button", { name: "Ensure role" }).click();
    const arn = await expectText(row.locator("td.arn"), /^arn:aws:iam::/);
    assert.ok(arn.startsWith(env("PORTAL_ARN_PREFIX")), `the ARN ${arn}`);
    await expectText(row.locator("td.state"), /^ACTIVE$/);
    assert.equal(await alert(page).isVisible(), false);

    // Every text the progress cell shows, in order: the operation is seen
    // running before it is seen done.
    await row.locator("td.progress").evaluate((cell) => {
      window.progressSeen = [];
      new MutationObserver(() => window.progressSeen.push(cell.textContent)).observe(cell, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await row.getByRole("button", { name: "Retire" }).click();
    await expectText(row.locator("td.progress"), /^retire: done — role DELETED$/);
    await expectText(row.locator("td.state"), /^DELETED$/);
    const seen = await page.evaluate(() => window.progressSeen);
    assert.match(seen[0], /^retire: next: /, `the first progress shown: ${JSON.stringify(seen)}`);
    assert.match(seen.at(-1), /retire: done/);
    assert.equal(await row.locator("td.arn").textContent(), "");
    assert.equal(await alert(page).isVisible(), false);
  });
});

test("a viewer sees the list, and an Ensure is refused with PERMISSION_DENIED", async () => {
  await withPage("viewer", async (page) => {
    await logIn(page, env("PORTAL_VIEWER_TOKEN"));
    const row = rowOf(page, TARGET);
    await row.waitFor();
    await row.getByRole("button", { name: "Ensure role" }).click();
    await expectText(alert(page), /^PERMISSION_DENIED \(7\): .+/);
    assert.match(await alert(page).textContent(), /request id: \S+/);
    assert.equal(await row.locator("td.arn").textContent(), "", "no ARN for a refused ensure");
  });
});

test("the list follows changes made elsewhere, live, with no click", async () => {
  await withPage("live-viewer", async (viewer) => {
    await logIn(viewer, env("PORTAL_VIEWER_TOKEN"));
    const watched = rowOf(viewer, TARGET);
    await watched.waitFor();
    // The operator test retired the target's role: the viewer sees DELETED.
    await expectText(watched.locator("td.state"), /^DELETED$/);
    await withPage("live-operator", async (operator) => {
      await logIn(operator, env("PORTAL_OPERATOR_TOKEN"));
      const row = rowOf(operator, TARGET);
      await row.getByRole("button", { name: "Ensure role" }).click();
      await expectText(row.locator("td.state"), /^ACTIVE$/);
      // The viewer's page did nothing: WatchInstances moved its row.
      await expectText(watched.locator("td.state"), /^ACTIVE$/);
      await row.getByRole("button", { name: "Retire" }).click();
      await expectText(row.locator("td.progress"), /^retire: done — role DELETED$/);
    });
    await expectText(watched.locator("td.state"), /^DELETED$/);
    assert.equal(await alert(viewer).isVisible(), false);
  });
});
