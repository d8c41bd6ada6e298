package redact

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	yaml "go.yaml.in/yaml/v4"
)

// pemChildren are the keys machinery's PEM types encode to (crypto/x509 in siderolabs/crypto:
// PEMEncodedCertificateAndKey is {crt, key}, PEMEncodedCertificate {crt}, PEMEncodedKey {key}).
var pemChildren = map[string][]string{
	"PEMEncodedCertificateAndKey": {"crt", "key"},
	"PEMEncodedCertificate":       {"crt"},
	"PEMEncodedKey":               {"key"},
}

// isMarshaler reports whether machinery encodes a type itself (URLs, addresses, sizes, PEM).
func isMarshaler(t reflect.Type) bool {
	p := reflect.PointerTo(t)

	return p.Implements(reflect.TypeFor[yaml.Marshaler]()) || p.Implements(reflect.TypeFor[encoding.TextMarshaler]())
}

// resolve follows a pattern's elements through a config document's Go type, as machinery
// encodes it (yaml tags, inline structs, maps, slices), and fails on any element the type
// does not have or a pattern that ends on a structure instead of a value.
func resolve(t reflect.Type, elems []string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}

	if len(elems) == 0 {
		if _, pem := pemChildren[t.Name()]; pem || t.Kind() == reflect.Struct && !isMarshaler(t) {
			return fmt.Errorf("ends on the structure %s, not a value", t)
		}

		return nil
	}

	e := elems[0]

	if children, ok := pemChildren[t.Name()]; ok {
		if len(elems) != 1 || !slices.Contains(children, e) {
			return fmt.Errorf("%s has only %v", t, children)
		}

		return nil
	}

	switch t.Kind() {
	case reflect.Struct:
		if isMarshaler(t) {
			return fmt.Errorf("%s is encoded as one value, it has no %q", t, e)
		}

		f, ok := fieldByYAMLName(t, e)
		if !ok {
			return fmt.Errorf("%s has no field %q", t, e)
		}

		return resolve(f, elems[1:])
	case reflect.Slice, reflect.Array:
		if e != "[]" {
			return fmt.Errorf("%s is a sequence, want [] before %q", t, e)
		}

		return resolve(t.Elem(), elems[1:])
	case reflect.Map:
		if e == "[]" {
			return fmt.Errorf("%s is a map, not a sequence", t)
		}

		return resolve(t.Elem(), elems[1:])
	case reflect.Interface:
		return nil // free-form below (resources.requests.*)
	default:
		return fmt.Errorf("%s is a value, it has no %q", t, e)
	}
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.Type, bool) {
	// An inline map takes every key no field has (meta.Unstructured).
	var inlineMap reflect.Type

	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")

		if strings.Contains(opts, "inline") {
			inner := f.Type
			for inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}

			switch inner.Kind() {
			case reflect.Map:
				inlineMap = inner.Elem()
			case reflect.Struct:
				if ft, ok := fieldByYAMLName(inner, name); ok {
					return ft, true
				}
			default:
			}

			continue
		}

		if f.IsExported() && tag == name {
			return f.Type, true
		}
	}

	return inlineMap, inlineMap != nil
}

// elements splits an expanded pattern into what resolve walks: keys, and "[]" per sequence.
func elements(path string) []string {
	var out []string

	for part := range strings.SplitSeq(path, ".") {
		items := 0
		for strings.HasSuffix(part, "[]") {
			part, items = strings.TrimSuffix(part, "[]"), items+1
		}

		out = append(out, part)
		for range items {
			out = append(out, "[]")
		}
	}

	return out
}

// documentType returns the Go type machinery decodes a document kind into.
func documentType(t *testing.T, kind string) reflect.Type {
	t.Helper()

	for _, src := range []string{"apiVersion: v1alpha1\nkind: " + kind + "\nname: x\n", "apiVersion: v1alpha1\nkind: " + kind + "\n"} {
		if p, err := configloader.NewFromBytes([]byte(src)); err == nil {
			return reflect.TypeOf(p.Documents()[0])
		}
	}

	t.Fatalf("machinery does not know the document kind %s", kind)

	return nil
}

// TestAllowListMatchesMachinery: every allow-listed field exists in machinery's config types
// with that spelling and ends on a value, so a typo cannot silently redact a field (or, worse,
// be mistaken for review of one).
func TestAllowListMatchesMachinery(t *testing.T) {
	check := func(t *testing.T, typ reflect.Type, patterns []string) {
		t.Helper()

		for _, p := range patterns {
			for _, path := range expand(p) {
				if err := resolve(typ, elements(path)); err != nil {
					t.Errorf("%s: %v", path, err)
				}
			}
		}
	}

	t.Run("v1alpha1", func(t *testing.T) {
		check(t, reflect.TypeFor[v1alpha1.Config](), v1alpha1Patterns)
	})

	for kind, fields := range kindFields() {
		t.Run(kind, func(t *testing.T) {
			typ := documentType(t, kind)

			// name is universal, but not every kind has one.
			if _, ok := fieldByYAMLName(typ.Elem(), "name"); ok {
				fields = append([]string{"name"}, fields...)
			}

			check(t, typ, append([]string{"apiVersion", "kind"}, fields...))
		})
	}
}

func TestExpand(t *testing.T) {
	got := expand("a.{b,c[]}.{d,e}")
	want := []string{"a.b.d", "a.b.e", "a.c[].d", "a.c[].e"}

	if !slices.Equal(got, want) {
		t.Errorf("expand = %v, want %v", got, want)
	}
}
