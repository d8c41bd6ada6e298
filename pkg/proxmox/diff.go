// Comparing a VM's config with its spec the way PVE normalises values.

package proxmox

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

func configChanges(cfg Params) []Change {
	var out []Change
	for _, k := range cfg.Keys() {
		out = append(out, Change{Key: k, To: cfg[k]})
	}

	return out
}

type diff struct {
	set     Params
	del     []string
	resize  map[string]int
	changes []Change
	notes   []string
	errs    []string
}

// ignoredDriveOpts are drive options PVE adds or normalises that the spec does not manage.
var ignoredDriveOpts = map[string]bool{"file": true, "size": true, "format": true}

// diffConfig compares an observed VM config (pending changes applied) with the spec.
func diffConfig(s VMSpec, cur map[string]string) diff {
	d := diff{set: Params{}, resize: map[string]int{}}

	for _, k := range s.Config.Keys() {
		want := s.Config[k]
		have, ok := cur[k]

		switch k {
		case SlotOS, SlotData:
			d.diffDisk(s, k, want, have, ok)
			continue
		case SlotCloudInit:
			if !ok || !strings.Contains(have, "cloudinit") {
				d.add(k, have, want)
			} else if st, _, _ := strings.Cut(parseProp(have, "file")["file"], ":"); st != s.Storage {
				d.errs = append(d.errs, fmt.Sprintf("%s: the cloud-init drive is on storage %s, the profile wants %s", k, st, s.Storage))
			}

			continue
		}

		if !ok || !sameValue(k, want, have) {
			d.add(k, have, want)
		}
	}
	// the guest agent is managed: enabled only with the extension
	if _, wantAgent := s.Config["agent"]; !wantAgent {
		if have, ok := cur["agent"]; ok && parseBool(parseProp(have, "enabled")["enabled"]) {
			d.del = append(d.del, "agent")
			d.changes = append(d.changes, Change{Key: "agent", From: have})
		}
	}

	if _, wantData := s.Config[SlotData]; !wantData {
		if have, ok := cur[SlotData]; ok {
			d.notes = append(d.notes, fmt.Sprintf("%s (%s) is not in the profile (no longhornDisk); it is left alone", SlotData, have))
		}
	}

	return d
}

func (d *diff) add(k, from, to string) {
	d.set[k] = to
	d.changes = append(d.changes, Change{Key: k, From: from, To: to})
}

func (d *diff) diffDisk(s VMSpec, k, want, have string, ok bool) {
	w := parseProp(want, "file")
	wantStorage, _, _ := strings.Cut(w["file"], ":")
	wantGiB := diskGiB(w)

	if !ok {
		d.add(k, "", want)
		return
	}

	h := parseProp(have, "file")
	haveStorage, _, _ := strings.Cut(h["file"], ":")
	haveGiB := diskGiB(h)

	if haveStorage != wantStorage {
		d.errs = append(d.errs, fmt.Sprintf("%s is on storage %s, the profile wants %s; moving disks is not automated (move it in Proxmox or change proxmox.storage back)",
			k, haveStorage, wantStorage))

		return
	}

	switch {
	case wantGiB > haveGiB:
		d.resize[k] = wantGiB
		d.changes = append(d.changes, Change{Key: k + " size", From: h["size"], To: strconv.Itoa(wantGiB) + "G"})
	case wantGiB < haveGiB:
		d.notes = append(d.notes, fmt.Sprintf("%s is %s, larger than the profile's %dG; disks never shrink", k, h["size"], wantGiB))
	}

	if !sameOpts(w, h) {
		// re-attach the same volume with the desired options
		parts := []string{h["file"]}

		for _, o := range sortedOptKeys(w) {
			parts = append(parts, o+"="+w[o])
		}

		d.add(k, have, strings.Join(parts, ","))
	}
}

func sortedOptKeys(m map[string]string) []string {
	var out []string

	for k := range m {
		if !ignoredDriveOpts[k] {
			out = append(out, k)
		}
	}

	sort.Strings(out)

	return out
}

func sameOpts(want, have map[string]string) bool {
	wk, hk := sortedOptKeys(want), sortedOptKeys(have)
	if len(wk) != len(hk) {
		return false
	}

	for i, k := range wk {
		if hk[i] != k || !sameScalar(want[k], have[k]) {
			return false
		}
	}

	return true
}

func sameScalar(a, b string) bool {
	if a == b {
		return true
	}

	pa, oka := boolValue(a)
	pb, okb := boolValue(b)

	return oka && okb && pa == pb
}

func boolValue(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return true, true
	case "0", "off", "no", "false":
		return false, true
	}

	return false, false
}

// sameValue compares a config value as PVE stores it with the desired one.
func sameValue(key, want, have string) bool {
	switch {
	case key == "tags":
		return strings.EqualFold(strings.Join(normTags(want), ";"), strings.Join(normTags(have), ";"))
	case key == "memory":
		return strings.TrimPrefix(want, "current=") == strings.TrimPrefix(have, "current=")
	case key == "agent":
		return sameProps(parseProp(want, "enabled"), parseProp(have, "enabled"))
	case key == "cpu":
		return sameProps(parseProp(want, "cputype"), parseProp(have, "cputype"))
	case strings.HasPrefix(key, "net"):
		wm, wmac, wo := splitNet(want)
		hm, hmac, ho := splitNet(have)

		return wm == hm && strings.EqualFold(wmac, hmac) && sameProps(wo, ho)
	case key == SlotISO:
		w, h := parseProp(want, "file"), parseProp(have, "file")
		return w["file"] == h["file"] && w["media"] == h["media"]
	}

	return sameScalar(strings.TrimSpace(want), strings.TrimSpace(have))
}

func sameProps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}

	for k, v := range a {
		if w, ok := b[k]; !ok || !sameScalar(v, w) {
			return false
		}
	}

	return true
}

func normTags(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
	for i := range f {
		f[i] = strings.ToLower(f[i])
	}

	sort.Strings(f)

	return f
}
