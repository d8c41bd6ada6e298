package longhorn

import (
	"strings"
	"testing"
)

func TestValuesDiff(t *testing.T) {
	tests := []struct {
		name          string
		live, planned map[string]any
		want          []string
	}{
		{name: "same values read back from a release", live: map[string]any{"persistence": map[string]any{"defaultClassReplicaCount": float64(2)}, "tags": []any{"a"}},
			planned: map[string]any{"persistence": map[string]any{"defaultClassReplicaCount": 2}, "tags": []string{"a"}}},
		{name: "added, removed, changed", live: map[string]any{"a": map[string]any{"x": "1", "gone": true}},
			planned: map[string]any{"a": map[string]any{"x": "2"}, "b": "new"},
			want:    []string{`a.gone: true -> (unset)`, `a.x: "1" -> "2"`, `b: (unset) -> "new"`}},
		{name: "a number becomes a string", live: map[string]any{"defaultSettings": map[string]any{"defaultReplicaCount": 2}},
			planned: map[string]any{"defaultSettings": map[string]any{"defaultReplicaCount": "2"}},
			want:    []string{`defaultSettings.defaultReplicaCount: 2 -> "2"`}},
		{name: "lists are replaced whole", live: map[string]any{"tolerations": []any{"a", "b"}}, planned: map[string]any{"tolerations": []any{"a"}},
			want: []string{`tolerations: ["a","b"] -> ["a"]`}},
		{name: "an empty map is a value", live: map[string]any{"nodeSelector": map[string]any{}}, planned: nil,
			want: []string{`nodeSelector: {} -> (unset)`}},
		{name: "credentials are not shown", live: map[string]any{"privateRegistry": map[string]any{"registryPasswd": "hunter2", "registryUser": "me"}},
			planned: map[string]any{"privateRegistry": map[string]any{"registryPasswd": "s3cret", "registryUser": "you"}},
			want:    []string{`privateRegistry.registryPasswd: (hidden) -> (hidden)`, `privateRegistry.registryUser: "me" -> "you"`}},
		{name: "a credential set for the first time", live: nil, planned: map[string]any{"token": "abc"},
			want: []string{`token: (unset) -> (hidden)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range ValuesDiff(tt.live, tt.planned) {
				got = append(got, c.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("ValuesDiff =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}
