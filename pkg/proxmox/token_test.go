package proxmox

import (
	"strings"
	"testing"
)

// TestTokenErrorsNeverQuoteTheSecret: malformed tokens whose secret ends up where the parser
// looks for the id (a stray '=', a space in place of '=') must not print any part of it. Before
// the fix the error quoted the "id", secret included.
func TestTokenErrorsNeverQuoteTheSecret(t *testing.T) {
	const id = "talforge@pve!provision"

	cases := []struct {
		name, in, want string
	}{
		{"trailing =", id + "=" + testSecret + "=", "stray '='"},
		{"space instead of =, then =", id + " " + testSecret + "=", "contains a space"},
		{"space instead of =", id + " " + testSecret, "a space separates"},
		{"tab instead of =", id + "\t" + testSecret, "a space separates"},
		{"= inside the secret", id + "=" + testSecret[:8] + "=" + testSecret[8:], "another '='"},
		{"no realm", "talforge!provision=" + testSecret, "no USER@ part"},
		{"no token id", "talforge@pve=" + testSecret, "no !TOKENID part"},
		{"secret before the id", testSecret + "=" + id, "no USER@ part"},
		{"secret pasted alone", testSecret, "found no '='"},
		{"bad realm char", "talforge@p/ve!provision=" + testSecret, "character PVE does not allow"},
		{"space in secret", id + "=" + testSecret[:8] + " " + testSecret[8:], "contains spaces"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.in)
			if err == nil {
				t.Fatalf("ParseToken(%q) accepted a malformed token", tc.in)
			}

			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}

			// No 6-character run of the secret, in any of its pieces.
			for i := 0; i+6 <= len(testSecret); i++ {
				if piece := testSecret[i : i+6]; strings.Contains(msg, piece) {
					t.Fatalf("error quotes the secret (%q): %s", piece, msg)
				}
			}
		})
	}
}

// TestTokenErrorsNameTheIDOnlyOnceParsed: an error names the id when, and only when, the id
// itself parsed.
func TestTokenErrorsNameTheIDOnlyOnceParsed(t *testing.T) {
	_, err := ParseToken("talforge@pve!provision=")
	if err == nil || !strings.Contains(err.Error(), "API token talforge@pve!provision:") {
		t.Errorf("an empty secret after a valid id: %v", err)
	}

	_, err = ParseToken("alice@pve!pro vision=x")
	if err == nil || strings.Contains(err.Error(), "alice") {
		t.Errorf("an id that did not parse is quoted: %v", err)
	}
}
