package lifecycle

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// CertificateStatus is when the client certificate of a stored credential file expires.
type CertificateStatus struct {
	File    string    `json:"file"`
	Expires time.Time `json:"expires"`
	// RenewSoon is true within machineconfig.RenewBefore of Expires: the next generate renews
	// the talosconfig's, the next command that needs the kubeconfig fetches a new one.
	RenewSoon bool `json:"renewSoon"`
}

// observeCertificates reads the expiry of the talosconfig's and the kubeconfig's client
// certificates; kc is the decrypted kubeconfig (nil when there is none).
func (st *StatusReport) observeCertificates(c *profile.Cluster, kc []byte, now time.Time) {
	add := func(file string, exp time.Time, err error) {
		if err != nil {
			st.problem("certificates: %s: %v", file, err)
			return
		}
		st.Certificates = append(st.Certificates, CertificateStatus{File: file, Expires: exp, RenewSoon: machineconfig.RenewalDue(exp, now)})
	}
	tc, err := sopsfile.DecryptFile(filepath.Join(c.OutputDir(), bootstrap.TalosconfigFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		add(bootstrap.TalosconfigFile, time.Time{}, err)
	default:
		exp, err := machineconfig.TalosconfigExpiry(tc)
		add(bootstrap.TalosconfigFile, exp, err)
	}
	if kc != nil {
		exp, err := bootstrap.KubeconfigExpiry(kc)
		add(bootstrap.KubeconfigFile, exp, err)
	}
}

func (st *StatusReport) printCertificates(w io.Writer, now time.Time) {
	if len(st.Certificates) == 0 {
		return
	}
	fmt.Fprintln(w, "\nClient certificates:")
	for _, c := range st.Certificates {
		left, note := "in "+formatAge(c.Expires.Sub(now)), ""
		switch {
		case !c.Expires.After(now):
			left, note = "expired", "  run `talforge generate` (talosconfig) or `talforge kubeconfig --refresh`"
		case c.RenewSoon:
			note = "  renewed by the next `talforge up`"
		}
		fmt.Fprintf(w, "  %-22s expires %s (%s)%s\n", c.File, c.Expires.UTC().Format(time.DateOnly), left, note)
	}
}
