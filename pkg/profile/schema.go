package profile

import (
	"encoding/json"
	"reflect"

	"github.com/invopop/jsonschema"
)

//go:generate go run ./internal/gencomments

// SchemaID is the $id of the profile's JSON Schema.
const SchemaID = "https://talforge.dev/schemas/cluster-v1alpha1.json"

// JSONSchema returns the profile's JSON Schema (draft 2020-12), with the field documentation
// taken from this package's doc comments. yaml-language-server uses it for completion and
// validation: add `# yaml-language-server: $schema=<path to the schema>` to a profile.
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: false,
		ExpandedStruct:             true,
		CommentMap:                 fieldComments(),
		Namer:                      func(t reflect.Type) string { return t.Name() },
	}

	s := r.Reflect(&Cluster{})
	s.ID = SchemaID
	s.Title = "talforge cluster profile"

	return json.MarshalIndent(s, "", "  ")
}
