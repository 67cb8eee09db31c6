// Facts about Dockerfile and docker-compose.yml that the linters do not
// check. Run by .ci/lint-container from the repository root, with the path
// of the yaml package (a dependency of dclint) as its argument.
"use strict";
const fs = require("fs");
const YAML = require(process.argv[2]);

const problems = [];
const fail = (file, msg) => problems.push(`${file}: ${msg}`);

// Dockerfile: instructions with their continuation lines joined.
const lines = fs.readFileSync("Dockerfile", "utf8")
  .replace(/\\\r?\n\s*/g, " ")
  .split(/\r?\n/)
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const froms = lines.filter((l) => /^FROM\s/i.test(l));
const final = lines.slice(lines.lastIndexOf(froms[froms.length - 1]));
if (!/^FROM\s+gcr\.io\/distroless\/static[\w.-]*:nonroot(\s|$)/i.test(final[0] || "")) {
  fail("Dockerfile", "the final stage must be FROM gcr.io/distroless/static-…:nonroot");
}
// Distroless has no shell: a shell-form command could never start.
for (const l of lines) {
  const m = /^(ENTRYPOINT|CMD|HEALTHCHECK)\s+(.*)$/i.exec(l);
  if (!m) continue;
  const args = m[1].toUpperCase() === "HEALTHCHECK" ? m[2].replace(/^(--\S+\s+)*/, "") : m[2];
  if (/^NONE$/i.test(args)) continue;
  const cmd = m[1].toUpperCase() === "HEALTHCHECK" ? args.replace(/^CMD\s+/i, "") : args;
  if (!cmd.startsWith("[")) fail("Dockerfile", `exec form needed (no shell in distroless): ${l}`);
}
const hc = final.filter((l) => /^HEALTHCHECK\s/i.test(l));
if (hc.length !== 1 || !/CMD\s*\[\s*"\/herald"\s*,\s*"healthcheck"\s*\]$/.test(hc[0])) {
  fail("Dockerfile", 'the final stage needs HEALTHCHECK … CMD ["/herald", "healthcheck"]');
}

// docker-compose.yml
const compose = YAML.parse(fs.readFileSync("docker-compose.yml", "utf8"));
const herald = (compose.services || {}).herald;
if (!herald) {
  fail("docker-compose.yml", "no herald service");
} else {
  let env = herald.environment || {};
  if (Array.isArray(env)) {
    env = Object.fromEntries(env.map((e) => [e.split("=")[0], e.includes("=") ? e.slice(e.indexOf("=") + 1) : undefined]));
  }
  // Go-style durations as Compose and Herald take them: 40s, 1m30s, 500ms.
  const seconds = (d) => {
    const unit = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, "µs": 1e-6, ns: 1e-9 };
    const parts = String(d).match(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g);
    if (!parts || parts.join("") !== String(d)) return NaN;
    return parts.reduce((t, p) => { const [, n, u] = /([\d.]+)(.*)/.exec(p); return t + n * unit[u]; }, 0);
  };
  const timeout = seconds(env.HERALD_SHUTDOWN_TIMEOUT);
  const grace = seconds(herald.stop_grace_period);
  if (!(timeout > 0)) fail("docker-compose.yml", "herald: set HERALD_SHUTDOWN_TIMEOUT explicitly (a duration such as 30s)");
  if (!(grace > timeout)) {
    fail("docker-compose.yml", `herald: stop_grace_period (${herald.stop_grace_period ?? "unset"}) must exceed HERALD_SHUTDOWN_TIMEOUT (${env.HERALD_SHUTDOWN_TIMEOUT ?? "unset"}), or Docker kills Herald mid-shutdown`);
  }
  // No fixed admin key: unset, passed through, or required (${VAR:?message}).
  const key = env.HERALD_ADMIN_KEY;
  if (key !== undefined && key !== null && !/^\$\{HERALD_ADMIN_KEY(:?-|:?\?[^}]*)?\}$/.test(key)) {
    fail("docker-compose.yml", `herald: HERALD_ADMIN_KEY must not have a fixed value or default: ${key}`);
  }
  const test = (herald.healthcheck || {}).test;
  if (JSON.stringify(test) !== JSON.stringify(["CMD", "/herald", "healthcheck"])) {
    fail("docker-compose.yml", 'herald: healthcheck test must be ["CMD", "/herald", "healthcheck"] (no shell in distroless)');
  }
  for (const p of herald.ports || []) {
    if (typeof p !== "string" || !p.startsWith("127.0.0.1:")) {
      fail("docker-compose.yml", `herald: publish on 127.0.0.1 only by default, not ${JSON.stringify(p)}`);
    }
  }
}

if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
