// Package redact renders Talos machine configs for people to read (the nodes.redacted.yaml
// review file, the config diffs plan and apply print) without any secret in them.
//
// It does not rely on a list of known secret fields: a user patch can put a credential almost
// anywhere (machine.env, a proxy URL with a password, extraManifestHeaders, an inline manifest
// holding a Secret, registry auth, a kubelet extraConfig entry). Instead every scalar value is
// replaced by Marker unless its field is on an allow-list of fields known to hold nothing
// secret — hostnames, addresses, subnets, versions, image references, disk paths and
// selectors, certificates (never their keys), ports and sizes — picked from the Talos
// v1alpha1 config reference and the multi-document types talforge emits (machinery's
// pkg/machinery/config/types). Keys and structure are kept, so a reviewer still sees which
// fields a change touches. Booleans and nulls are shown everywhere: one bit cannot carry a
// credential. An allow-listed value is still redacted when it looks like a credential (a URL
// with user info or a query, a private key).
//
// A document kind not on the list shows only its apiVersion, kind and name.
package redact
