package s3server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ActionsFromIAMPolicy translates an AWS IAM identity policy (the one `talforge
// iam-policy` writes, pkg/longhorn/iam.go IAMPolicy) into SeaweedFS identity actions for
// one bucket, so a test user can hold exactly the grants talforge asks for.
//
// SeaweedFS's actions (weed/s3api/s3_constants/s3_actions.go ACTION_READ, ACTION_WRITE,
// ACTION_LIST; routes in weed/s3api/s3api_server.go) are coarser than IAM's:
//
//	s3:ListBucket        on the bucket       -> List:<bucket>
//	s3:GetObject         on objects          -> Read:<bucket>/<pattern>
//	s3:PutObject         on objects          -> Write:<bucket>/<pattern>
//	s3:DeleteObject      on objects          -> Write:<bucket>/<pattern>
//	s3:GetBucketLocation on the bucket       -> nothing
//
// SeaweedFS has no delete action: DeleteObject and batch DeleteObjects are both gated on
// Write (AuthorizeObjectDelete in weed/s3api/auth_credentials.go). So a policy granting
// PutObject without DeleteObject on the same resources (or the reverse) cannot be
// expressed as actions and is an error rather than a silently wider grant; a test that
// needs "may write but not delete" attaches the policy itself ([User.Policy]), which
// SeaweedFS evaluates per operation.
//
// GetBucketLocation maps to nothing: SeaweedFS gates it on Read of the bucket, and
// Read:<bucket> would also grant every object in it. Longhorn's backupstore
// (github.com/longhorn/backupstore/s3) never calls it (nor HeadBucket); it only lists,
// heads, gets, puts and deletes objects.
//
// Only Allow statements are translated. A Deny statement, NotAction, NotResource or a
// Condition cannot be expressed as SeaweedFS actions and is an error, as is an action
// outside the table above. Statements on other buckets are skipped; a policy that grants
// nothing on bucket is an error. The result is sorted and free of duplicates.
func ActionsFromIAMPolicy(policyJSON []byte, bucket string) ([]string, error) {
	if bucket == "" {
		return nil, errors.New("iam policy: no bucket given")
	}
	var doc struct {
		Version   string
		Statement oneOrMany[iamStatement]
	}
	if err := json.Unmarshal(policyJSON, &doc); err != nil {
		return nil, fmt.Errorf("iam policy: %w", err)
	}
	if len(doc.Statement) == 0 {
		return nil, errors.New("iam policy: no statements")
	}
	var actions []string
	// write records, per SeaweedFS Write grant, which of PutObject/DeleteObject asked for it.
	write := map[string]map[string]bool{}
	for i, st := range doc.Statement {
		where := fmt.Sprintf("statement %d", i)
		if st.Sid != "" {
			where = fmt.Sprintf("statement %q", st.Sid)
		}
		switch {
		case st.Effect != "Allow":
			return nil, fmt.Errorf("iam policy: %s: Effect %q: only Allow statements can be expressed as SeaweedFS actions", where, st.Effect)
		case st.NotAction != nil || st.NotResource != nil:
			return nil, fmt.Errorf("iam policy: %s: NotAction/NotResource cannot be expressed as SeaweedFS actions", where)
		case st.Condition != nil:
			return nil, fmt.Errorf("iam policy: %s: a Condition cannot be expressed as SeaweedFS actions", where)
		case len(st.Action) == 0 || len(st.Resource) == 0:
			return nil, fmt.Errorf("iam policy: %s: needs Action and Resource", where)
		}
		var resources []string
		for _, res := range st.Resource {
			if res == "*" {
				// Everything: the bucket itself and all of its objects.
				resources = append(resources, "arn:aws:s3:::"+bucket, "arn:aws:s3:::"+bucket+"/*")
				continue
			}
			resources = append(resources, res)
		}
		for _, res := range resources {
			scope, isObject, ok, err := resourceScope(res, bucket)
			if err != nil {
				return nil, fmt.Errorf("iam policy: %s: %w", where, err)
			}
			for _, a := range st.Action {
				var grant string
				switch strings.ToLower(a) {
				case "s3:listbucket":
					if !isObject {
						grant = "List:" + scope
					}
				case "s3:getbucketlocation":
					// Nothing: see the function comment.
				case "s3:getobject":
					if isObject {
						grant = "Read:" + scope
					}
				case "s3:putobject", "s3:deleteobject":
					if isObject {
						grant = "Write:" + scope
						if write[grant] == nil {
							write[grant] = map[string]bool{}
						}
						write[grant][strings.ToLower(a)] = true
					}
				default:
					return nil, fmt.Errorf("iam policy: %s: action %q has no SeaweedFS equivalent here (known: s3:ListBucket, s3:GetBucketLocation, s3:GetObject, s3:PutObject, s3:DeleteObject)", where, a)
				}
				// An action on a resource of the wrong kind (GetObject on the bucket ARN,
				// ListBucket on objects) grants nothing in AWS either.
				if grant != "" && ok {
					actions = append(actions, grant)
				}
			}
		}
	}
	for grant, by := range write {
		if !by["s3:putobject"] || !by["s3:deleteobject"] {
			have, missing := "s3:PutObject", "s3:DeleteObject"
			if by["s3:deleteobject"] {
				have, missing = missing, have
			}
			return nil, fmt.Errorf("iam policy: grants %s without %s on %s: SeaweedFS's Write action covers both (attach the policy as User.Policy to enforce the difference)", have, missing, strings.TrimPrefix(grant, "Write:"))
		}
	}
	if len(actions) == 0 {
		return nil, fmt.Errorf("iam policy: grants nothing on bucket %s", bucket)
	}
	slices.Sort(actions)
	return slices.Compact(actions), nil
}

type iamStatement struct {
	Sid         string
	Effect      string
	Action      oneOrMany[string]
	Resource    oneOrMany[string]
	NotAction   json.RawMessage
	NotResource json.RawMessage
	Condition   json.RawMessage
}

// oneOrMany is an IAM policy field that may be a single value or a list.
type oneOrMany[T any] []T

func (o *oneOrMany[T]) UnmarshalJSON(b []byte) error {
	var one T
	if err := json.Unmarshal(b, &one); err == nil {
		*o = []T{one}
		return nil
	}
	var many []T
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*o = many
	return nil
}

// resourceScope turns a resource ARN into the part of a SeaweedFS action after the
// colon: "bucket" for the bucket, "bucket/pattern" for objects ("bucket/*" for all of
// them: SeaweedFS matches a pattern with wildcards against bucket/key, while a bare
// "bucket" would also grant bucket-level requests such as HeadBucket, which AWS does not
// tie to object ARNs). ok is false for a resource on another bucket.
func resourceScope(res, bucket string) (scope string, isObject, ok bool, err error) {
	rest, found := strings.CutPrefix(res, "arn:")
	if !found {
		return "", false, false, fmt.Errorf("resource %q is not an S3 ARN", res)
	}
	// arn:<partition>:s3:::<bucket>[/<key pattern>]
	parts := strings.SplitN(rest, ":", 5)
	if len(parts) != 5 || parts[1] != "s3" || parts[2] != "" || parts[3] != "" {
		return "", false, false, fmt.Errorf("resource %q is not an S3 ARN", res)
	}
	name, key, isObject := strings.Cut(parts[4], "/")
	if name != bucket {
		if strings.ContainsAny(name, "*?") {
			return "", false, false, fmt.Errorf("resource %q: wildcard bucket names are not supported", res)
		}
		return "", isObject, false, nil
	}
	if !isObject {
		return bucket, false, true, nil
	}
	return bucket + "/" + key, true, true, nil
}

// PolicyWithoutAction returns the IAM policy document with action removed from the
// Action of every statement, for a user that holds a policy minus one grant (a test of
// what breaks without s3:DeleteObject). Everything else in the document is kept; action
// names compare case-insensitively, as IAM's do. A policy that names action nowhere is
// an error: the test would not be testing what it says.
func PolicyWithoutAction(policyJSON []byte, action string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(policyJSON, &doc); err != nil {
		return nil, fmt.Errorf("iam policy: %w", err)
	}
	var statements oneOrMany[map[string]json.RawMessage]
	if err := json.Unmarshal(doc["Statement"], &statements); err != nil {
		return nil, fmt.Errorf("iam policy: Statement: %w", err)
	}
	found := false
	for i, st := range statements {
		raw, ok := st["Action"]
		if !ok {
			continue
		}
		var actions oneOrMany[string]
		if err := json.Unmarshal(raw, &actions); err != nil {
			return nil, fmt.Errorf("iam policy: statement %d: Action: %w", i, err)
		}
		kept := slices.DeleteFunc(slices.Clone(actions), func(a string) bool { return strings.EqualFold(a, action) })
		if len(kept) == len(actions) {
			continue
		}
		found = true
		// Marshalling strings cannot fail.
		st["Action"], _ = json.Marshal([]string(kept))
	}
	if !found {
		return nil, fmt.Errorf("iam policy: grants no %s:\n%s", action, policyJSON)
	}
	// Marshalling what was just unmarshalled cannot fail.
	doc["Statement"], _ = json.Marshal([]map[string]json.RawMessage(statements))
	return json.Marshal(doc)
}
