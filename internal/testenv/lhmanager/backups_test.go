package lhmanager

import (
	"testing"
	"time"
)

func TestBackupURLRoundTrip(t *testing.T) {
	tests := []struct {
		b    StoredBackup
		want string
	}{
		{StoredBackup{Target: "s3://bucket@eu-central-1/", Volume: "traefik-data", Name: "backup-1a2b"}, "s3://bucket@eu-central-1/?backup=backup-1a2b&volume=traefik-data"},
		{StoredBackup{Target: "s3://bucket/path/", Volume: "pvc-1", Name: "b"}, "s3://bucket/path/?backup=b&volume=pvc-1"},
	}
	for _, tt := range tests {
		if got := tt.b.URL(); got != tt.want {
			t.Errorf("URL() = %q, want %q", got, tt.want)
		}
		target, vol, name, err := parseBackupURL(tt.want)
		if err != nil || target != tt.b.Target || vol != tt.b.Volume || name != tt.b.Name {
			t.Errorf("parseBackupURL(%q) = %q %q %q %v", tt.want, target, vol, name, err)
		}
	}
	for _, bad := range []string{"s3://bucket/", "s3://bucket/?backup=x", "s3://bucket/?volume=v"} {
		if _, _, _, err := parseBackupURL(bad); err == nil {
			t.Errorf("parseBackupURL(%q) accepted", bad)
		}
	}
}

func TestBackupStoreKeepsTargetsApartAndOrdersByTime(t *testing.T) {
	s := NewBackupStore()
	now := time.Now()
	s.Put(StoredBackup{Target: "s3://a/", Volume: "v", Name: "new", Created: now})
	s.Put(StoredBackup{Target: "s3://a/", Volume: "v", Name: "old", Created: now.Add(-time.Hour)})
	s.Put(StoredBackup{Target: "s3://b/", Volume: "v", Name: "other", Created: now})
	s.Put(StoredBackup{Target: "s3://a/", Volume: "v", Name: "new", Created: now, VolumeSize: "5"}) // replaced, not added
	got := s.Backups("s3://a/")
	if len(got) != 2 || got[0].Name != "old" || got[1].Name != "new" || got[1].VolumeSize != "5" {
		t.Errorf("Backups(s3://a/) = %+v", got)
	}
	if _, ok := s.find("s3://b/", "v", "new"); ok {
		t.Error("a backup of one target found under another")
	}
}
