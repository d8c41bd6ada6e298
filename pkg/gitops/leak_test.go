package gitops

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const pemKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIJI3AB+efOauLJ9zNRD47lhuymrMFpPR/IgiBV/4z4GQoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"

func TestCheckLeaks(t *testing.T) {
	for _, tc := range []struct {
		name string
		file File
		want string // "" = clean
	}{
		{"PEM key", File{Path: "a.yaml", Data: []byte("x: 1\nkey: |\n  " + pemKey)}, "a.yaml:3: PEM private key"},
		{"base64 PEM key as Talos stores CAs", File{Path: "n.yaml", Data: []byte("ca:\n  crt: abc\n  key: " + base64.StdEncoding.EncodeToString([]byte(pemKey)) + "\n")}, "n.yaml:3: base64-encoded PEM private key"},
		{"age identity", File{Path: "k.txt", Data: []byte("# public key: age1x\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n")}, "k.txt:2: age identity"},
		{"bootstrap token", File{Path: "t.yaml", Data: []byte("machine:\n  token: abcdef.0123456789abcdef\n")}, "t.yaml:2: bootstrap token"},
		{"AWS secret key anywhere", File{Path: "v.yaml", Data: []byte("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")}, "plaintext AWS_SECRET_ACCESS_KEY"},
		{"plaintext secret field in a file meant to be encrypted", File{Path: "s.sops.yaml", Secret: true, Data: []byte("cluster:\n  secret: hunter2\n")}, `s.sops.yaml:2: plaintext "secret"`},
		{"unredacted field in a redacted view", File{Path: "r.yaml", Redacted: true, Data: []byte("issuer:\n  privateKey: abc\n")}, `plaintext "privateKey"`},
		{"JSON member", File{Path: "x.enc", Secret: true, Data: []byte("{\n  \"token\": \"plain\",\n")}, `x.enc:2: plaintext "token"`},
		{"encrypted values are fine", File{Path: "s.sops.yaml", Secret: true, Data: []byte("token: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n  age:\n    - recipient: age1abc\n      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n")}, ""},
		{"redacted values are fine", File{Path: "r.yaml", Redacted: true, Data: []byte("machine:\n  token: '******'\n  ca:\n    crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n    key: \"\"\n")}, ""},
		{"a certificate is not a key", File{Path: "c.yaml", Data: []byte("crt: " + base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")) + "\n")}, ""},
		{"field names are only checked where secrets live", File{Path: "values.yaml", Data: []byte("tolerations:\n  - key: node-role\n")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLeaks([]File{tc.file})

			if tc.want == "" {
				if err != nil {
					t.Fatalf("false positive: %v", err)
				}

				return
			}

			var le LeakError
			if !errors.As(err, &le) {
				t.Fatalf("want a LeakError, got %v", err)
			}

			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was written") {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}
