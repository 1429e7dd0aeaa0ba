// Checks a Tactful consent receipt with panva/jose, a JOSE library Tactful does not write: the
// compact JWS must verify under the published JWK (EdDSA), and its payload must be the receipt's
// canonical JSON as docs/sdks-and-receipts.md defines it, recomputed here from the receipt.
// usage: node verify_receipt.mjs SIGNING_KEY.json SIGNED_RECEIPT.json
// Prints one line: `verified <consentReceiptID>`; exits non-zero with the reason otherwise.
import { readFileSync } from 'node:fs'
import { compactVerify, importJWK } from 'jose'

const [keyFile, receiptFile] = process.argv.slice(2)
const published = JSON.parse(readFileSync(keyFile, 'utf8'))
const signed = JSON.parse(readFileSync(receiptFile, 'utf8'))

// Object keys sorted, no whitespace; receipts hold only strings, booleans, integers, null,
// arrays and objects, whose JSON.stringify text is the same as the signer's.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort()
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

const key = await importJWK(published.jwk, 'EdDSA')
let verified
try {
  verified = await compactVerify(signed.jws, key, { algorithms: ['EdDSA'] })
} catch (error) {
  console.error(`the JWS does not verify: ${error.code ?? ''} ${error.message}`)
  process.exit(1)
}
if (verified.protectedHeader.kid !== published.jwk.kid) {
  console.error(`the JWS names key ${verified.protectedHeader.kid}, not ${published.jwk.kid}`)
  process.exit(1)
}
const payload = new TextDecoder().decode(verified.payload)
if (payload !== canonical(signed.receipt)) {
  console.error('the JWS payload is not the canonical JSON of the receipt beside it')
  process.exit(1)
}
console.log(`verified ${JSON.parse(payload).consentReceiptID}`)
