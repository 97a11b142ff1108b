// Build a signed linkdesk link with Node's crypto module (docs/signed-links.md).
// Usage: SIGNING_KEY=<key> node sign_link.js BASE_URL KEY_ID TENANT_ID NUMBER
// [LOCATION [CATEGORY]]. The link expires in 5 minutes, or at the Unix time in
// LINK_EXPIRES_AT when that is set.
const crypto = require("node:crypto");

function signLink(baseUrl, keyId, key, tenantId, number, expires, location = "", category = "") {
  const lines = [tenantId, number, String(expires), location, category].join("\n");
  const signingInput = `v1.${keyId}.${Buffer.from(lines, "utf8").toString("base64url")}`;
  const mac = crypto.createHmac("sha256", Buffer.from(key, "ascii")).update(signingInput).digest("base64url");
  return `${baseUrl}/public/TicketAllgmein/Ticket.aspx?sig=${signingInput}.${mac}`;
}

if (require.main === module) {
  const [baseUrl, keyId, tenantId, number, ...presets] = process.argv.slice(2);
  const expires = Number(process.env.LINK_EXPIRES_AT) || Math.floor(Date.now() / 1000) + 300;
  console.log(signLink(baseUrl, keyId, process.env.SIGNING_KEY, tenantId, number, expires, ...presets));
}

module.exports = { signLink };
