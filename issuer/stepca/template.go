package stepca

// X509Template is the X.509 template the step-ca JWK provisioner that
// meshca uses must carry (its options.x509.template in ca.json). step-ca's
// default leaf template gives every certificate serverAuth and clientAuth and
// RSA keys keyEncipherment too; meshca's profiles differ (serving is
// serverAuth only) and its post-sign check insists on them. The template
// takes the subject and extended key usages from the "meshca" claim of the
// one-time token, which meshca signs with the provisioner key, and the SANs
// from the token's sans, which step-ca has already matched against the
// certificate request. Tokens without the claim (from `step ca certificate`,
// say) get step-ca's defaults for ECDSA keys.
const X509Template = `{
{{- with .Token.meshca }}
	"subject": {{ if .commonName }}{"commonName": {{ toJson .commonName }}}{{ else }}{}{{ end }},
	"extKeyUsage": {{ toJson .extKeyUsage }},
{{- else }}
	"subject": {{ toJson .Subject }},
	"extKeyUsage": ["serverAuth", "clientAuth"],
{{- end }}
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"]
}`

// tokenClaim is the private claim of meshca's tokens that X509Template reads.
type tokenClaim struct {
	Profile     string   `json:"profile"`
	CommonName  string   `json:"commonName,omitempty"`
	ExtKeyUsage []string `json:"extKeyUsage"`
}
