# Unit tests of the decision, against testdata/data.json (the data document of
# testdata/policies/fixture.yaml). Each test pins one line of the semantics in DESIGN.md.
package portcullis.authz_test

import data.portcullis.authz

fixture := data.testdata.portcullis

git := "/usr/bin/git"

curl := "/usr/bin/curl"

unresolved := "<unresolved>"

# --- helpers ------------------------------------------------------------------------------

_eval(inp) := d if {
	d := authz.decision with input as inp
		with data.portcullis.policies as fixture.policies
		with data.portcullis.index as fixture.index
}

run(path, host, port) := _eval({"exec": {"path": path, "ancestors": []}, "network": {"host": host, "port": port}})

run_with_ancestors(path, ancestors, host, port) := _eval({
	"exec": {"path": path, "ancestors": ancestors},
	"network": {"host": host, "port": port},
})

run_addresses(path, host, port, addresses) := _eval({
	"exec": {"path": path, "ancestors": []},
	"network": {"host": host, "port": port, "addresses": addresses},
})

run_http(path, host, port, method, req_path) := _eval({
	"exec": {"path": path, "ancestors": []},
	"network": {"host": host, "port": port},
	"request": {"method": method, "path": req_path},
})

allowed_by(d, policy) if {
	d.allow == true
	d.decision == "allow"
	d.policy == policy
}

denied(d) if {
	d.allow == false
	d.decision == "deny"
}

# --- exact hosts, case, trailing dot --------------------------------------------------------

test_exact_host_allowed_for_listed_binary if allowed_by(run(git, "api.github.com", 443), "github")

test_exact_host_is_case_insensitive if allowed_by(run(git, "API.GitHub.COM", 443), "github")

test_exact_host_ignores_trailing_dot if allowed_by(run(git, "api.github.com.", 443), "github")

test_pattern_written_with_case_and_dot_matches if allowed_by(run(curl, "registry.example.org", 443), "mirror")

test_exact_host_does_not_match_subdomain if denied(run(git, "x.api.github.com", 443))

test_exact_host_does_not_match_parent if denied(run(git, "github.com", 443))

test_unicode_host_compared_in_punycode if allowed_by(run(curl, "xn--bcher-kva.example", 443), "unicode")

test_ip_literal_host if allowed_by(run(curl, "198.51.100.7", 22), "literal")

# --- single-label wildcard ------------------------------------------------------------------

test_star_matches_one_label if allowed_by(run(git, "raw.githubusercontent.com", 443), "github")

test_star_does_not_match_apex if denied(run(git, "githubusercontent.com", 443))

test_star_does_not_match_two_labels if denied(run(git, "a.b.githubusercontent.com", 443))

test_star_inside_label if allowed_by(run("/usr/bin/python3", "api-eu.example.net", 443), "wild")

test_star_inside_label_not_other_prefix if denied(run("/usr/bin/python3", "web-eu.example.net", 443))

test_star_inside_label_not_across_dot if denied(run("/usr/bin/python3", "api-x.eu.example.net", 443))

# --- multi-label wildcard -------------------------------------------------------------------

test_double_star_matches_one_label if allowed_by(run("/usr/bin/wget", "a.deep.example", 443), "wild")

test_double_star_matches_many_labels if allowed_by(run("/usr/bin/wget", "a.b.c.deep.example", 443), "wild")

test_double_star_does_not_match_apex if denied(run("/usr/bin/wget", "deep.example", 443))

test_double_star_does_not_match_lookalike if denied(run("/usr/bin/wget", "notdeep.example", 443))

# --- empty labels: a wildcard never stands for one -----------------------------------------

test_star_does_not_match_empty_label if denied(run(git, ".githubusercontent.com", 443))

test_star_does_not_match_empty_label_before_suffix if denied(run(git, "a..githubusercontent.com", 443))

test_star_inside_label_matches_empty_run if allowed_by(run("/usr/bin/python3", "api-.example.net", 443), "wild")

test_double_star_does_not_match_empty_label if denied(run("/usr/bin/wget", ".deep.example", 443))

test_double_star_does_not_match_inner_empty_label if denied(run("/usr/bin/wget", "a..deep.example", 443))

test_wildcard_does_not_match_second_trailing_dot if denied(run("/usr/bin/wget", "a.deep.example..", 443))

# --- ports ----------------------------------------------------------------------------------

test_wrong_port_denied if {
	d := run(git, "api.github.com", 80)
	denied(d)
	d.reason == "api.github.com:80 is not allowed by any policy"
	d.policy == null
}

test_multi_port_first if allowed_by(run(curl, "registry.example.org", 80), "mirror")

test_multi_port_second if allowed_by(run(curl, "registry.example.org", 443), "mirror")

test_multi_port_other_denied if denied(run(curl, "registry.example.org", 8080))

test_ports_on_wildcard if allowed_by(run("/usr/bin/python3", "api-x.example.net", 8443), "wild")

# --- binaries -------------------------------------------------------------------------------

test_binary_not_listed_denied_with_names if {
	d := run(curl, "api.github.com", 443)
	denied(d)
	d.policy == "github"
	d.reason == "binary /usr/bin/curl is not allowed to reach api.github.com:443; the policies that cover it (github) allow only their listed binaries"
}

test_single_star_binary_glob_stays_in_segment if denied(run("/usr/bin/sub/x", "api-x.example.net", 443))

test_single_star_binary_glob_matches_segment if allowed_by(run("/usr/bin/x", "api-x.example.net", 443), "wild")

test_double_star_binary_glob_crosses_segments if {
	allowed_by(run("/usr/lib/node_modules/npm/bin/npm-cli.js", "api.github.com", 443), "github")
	allowed_by(run("/usr/lib/node_modules/@scope/pkg/bin/run.js", "api.github.com", 443), "github")
}

test_double_star_binary_glob_keeps_literal_parts if denied(run("/usr/lib/node_modules/npm/lib/cli.js", "api.github.com", 443))

test_ancestor_match_allows if {
	d := run_with_ancestors(curl, [{"pid": 10, "path": "/bin/bash"}, {"pid": 5, "path": git}], "api.github.com", 443)
	allowed_by(d, "github")
}

test_ancestor_as_plain_strings if allowed_by(run_with_ancestors(curl, ["/bin/bash", git], "api.github.com", 443), "github")

test_ancestors_named_in_deny_reason if {
	d := run_with_ancestors(curl, ["/bin/bash"], "api.github.com", 443)
	denied(d)
	d.reason == "binary /usr/bin/curl (ancestors: /bin/bash) is not allowed to reach api.github.com:443; the policies that cover it (github) allow only their listed binaries"
}

test_relative_exec_path_never_matches if denied(run("usr/bin/git", "api.github.com", 443))

# --- empty binaries and the <unresolved> sentinel --------------------------------------------

test_no_binaries_means_any_binary if allowed_by(run("/opt/anything/bin/tool", "registry.example.org", 443), "mirror")

test_empty_binaries_list_means_any_binary if allowed_by(run("/opt/x", "198.51.100.7", 22), "literal")

test_unresolved_allowed_by_policy_without_binaries if allowed_by(run(unresolved, "registry.example.org", 443), "mirror")

test_unresolved_denied_by_policy_with_binaries if {
	d := run(unresolved, "api.github.com", 443)
	denied(d)
	contains(d.reason, "<unresolved> (the calling program could not be identified)")
}

test_unresolved_never_matches_slash_double_star if denied(run(unresolved, "any.example.com", 443))

test_slash_double_star_matches_any_resolved_binary if allowed_by(run("/srv/app/bin/x", "any.example.com", 443), "anything")

# --- overlapping policies: the lexicographically smallest allowing policy --------------------

test_overlap_reports_smallest_name if allowed_by(run(curl, "shared.example.com", 443), "overlap-a")

test_overlap_falls_back_to_other_policy if allowed_by(run("/usr/bin/wget", "shared.example.com", 443), "overlap-b")

test_overlap_unresolved_uses_policy_without_binaries if allowed_by(run(unresolved, "shared.example.com", 443), "overlap-b")

# --- allowed_ips ----------------------------------------------------------------------------

test_hostless_allows_any_host_inside_cidr if {
	d := run_addresses(unresolved, "pg.anywhere.example", 5432, ["10.20.1.2"])
	allowed_by(d, "db")
	d.explicit_ips == true
}

test_hostless_ipv6 if allowed_by(run_addresses(unresolved, "pg6.example", 5432, ["2001:db8:20::5"]), "db")

test_hostless_every_address_must_be_inside if {
	d := run_addresses(unresolved, "pg.anywhere.example", 5432, ["10.20.1.2", "10.99.0.1"])
	denied(d)
	d.reason == "pg.anywhere.example:5432 resolved to addresses outside the allowed_ips of policy db"
	d.policy == "db"
}

test_hostless_outside_cidr_denied if denied(run_addresses(unresolved, "x.example", 5432, ["10.21.0.1"]))

test_hostless_wrong_port_denied if denied(run_addresses(unresolved, "x.example", 5433, ["10.20.0.1"]))

test_hostless_empty_address_list_denied if denied(run_addresses(unresolved, "x.example", 5432, []))

test_hostless_before_resolution_is_provisional if {
	d := run(unresolved, "x.example", 5432)
	allowed_by(d, "db")
	d.explicit_ips == false
}

test_host_with_allowed_ips_inside if allowed_by(run_addresses(curl, "db.internal.example", 5433, ["10.30.4.4"]), "db")

test_host_with_allowed_ips_outside if denied(run_addresses(curl, "db.internal.example", 5433, ["10.20.4.4"]))

test_host_with_allowed_ips_other_host if denied(run_addresses(curl, "other.internal.example", 5433, ["10.30.4.4"]))

test_plain_endpoint_not_explicit_ips if {
	d := run_addresses(curl, "registry.example.org", 443, ["203.0.113.9"])
	allowed_by(d, "mirror")
	d.explicit_ips == false
}

# --- a deny says whether an endpoint names the addresses (report-only's SSRF check) ---------

_named_policies := {
	"named": {"name": "named", "binaries": [git], "endpoints": [{
		"host": "*.corp.example", "host_kind": "wildcard", "ports": [443], "protocol": "",
		"enforcement": "enforce", "rules": [], "deny_rules": [], "allowed_ips": ["10.40.0.0/16"],
	}]},
	"open": {"name": "open", "binaries": [], "endpoints": [{
		"host": "*.corp.example", "host_kind": "wildcard", "ports": [443], "protocol": "",
		"enforcement": "enforce", "rules": [], "deny_rules": [], "allowed_ips": [],
	}]},
}

_named(path, host, port, addresses) := d if {
	d := authz.decision with input as {
		"exec": {"path": path, "ancestors": []},
		"network": {"host": host, "port": port, "addresses": addresses},
	}
		with data.portcullis.policies as _named_policies
		with data.portcullis.index as {"exact": {}, "wildcard": {"corp.example": [["named", 0]]}, "hostless": {}}
}

test_deny_names_addresses_of_endpoint_for_other_binary if {
	d := _named(curl, "git.corp.example", 443, ["10.40.1.1"])
	denied(d)
	d.explicit_ips == true
}

test_deny_does_not_name_addresses_outside if {
	d := _named(curl, "git.corp.example", 443, ["10.40.1.1", "10.41.0.1"])
	denied(d)
	d.explicit_ips == false
}

test_deny_does_not_name_addresses_for_other_port if {
	d := _named(curl, "git.corp.example", 8443, ["10.40.1.1"])
	denied(d)
	d.explicit_ips == false
}

test_deny_does_not_name_addresses_for_empty_label if {
	d := _named(curl, ".corp.example", 443, ["10.40.1.1"])
	denied(d)
	d.explicit_ips == false
}

test_deny_before_resolution_names_no_addresses if {
	d := run(curl, "api.github.com", 443)
	denied(d)
	d.explicit_ips == false
}

test_allow_names_addresses_only_of_its_endpoints if {
	d := authz.decision with input as {
		"exec": {"path": curl, "ancestors": []},
		"network": {"host": "git.corp.example", "port": 443, "addresses": ["10.40.1.1"]},
	}
		with data.portcullis.policies as _named_policies
		with data.portcullis.index as {"exact": {}, "wildcard": {"corp.example": [["named", 0], ["open", 0]]}, "hostless": {}}
	allowed_by(d, "open")
	d.explicit_ips == false
}

test_extension_deny_names_addresses if {
	d := authz.decision with input as {
		"exec": {"path": git, "ancestors": []},
		"network": {"host": "git.corp.example", "port": 443, "addresses": ["10.40.1.1"]},
	}
		with data.portcullis.policies as _named_policies
		with data.portcullis.index as {"exact": {}, "wildcard": {"corp.example": [["named", 0]]}, "hostless": {}}
		with data.portcullis.ext.deny as {"not today"}
	denied(d)
	d.explicit_ips == true
}

# --- L7 rules -------------------------------------------------------------------------------

test_l7_allowed_get if allowed_by(run_http(curl, "api.internal.example", 8080, "GET", "/v1/users/1"), "internal-api")

test_l7_method_case_insensitive if allowed_by(run_http(curl, "api.internal.example", 8080, "get", "/v1/x"), "internal-api")

test_l7_rule_method_written_lower_case if allowed_by(run_http(curl, "api.internal.example", 8080, "POST", "/v1/items/7"), "internal-api")

test_l7_query_string_ignored if allowed_by(run_http(curl, "api.internal.example", 8080, "GET", "/v1/x?admin=1"), "internal-api")

test_l7_method_not_permitted if {
	d := run_http(curl, "api.internal.example", 8080, "DELETE", "/v1/users/1")
	denied(d)
	d.reason == "DELETE /v1/users/1 to api.internal.example:8080 is not permitted by the method/path rules of policy internal-api"
	d.policy == "internal-api"
}

test_l7_path_not_permitted if denied(run_http(curl, "api.internal.example", 8080, "GET", "/v2/x"))

test_l7_single_star_path_segment if denied(run_http(curl, "api.internal.example", 8080, "POST", "/v1/items/7/parts"))

test_l7_deny_wins_over_allow if {
	d := run_http(curl, "api.internal.example", 8080, "GET", "/v1/admin/keys")
	denied(d)
	d.reason == "GET /v1/admin/keys to api.internal.example:8080 is blocked by a deny rule of policy internal-api"
}

# --- TLS inspection: the connection-level decision says whether to inspect ------------------

test_tunnel_to_rest_endpoint_allowed_for_inspection if {
	d := run(curl, "api.internal.example", 8080)
	allowed_by(d, "internal-api")
	d.inspect == true
}

test_tunnel_to_passthrough_rest_endpoint_denied if {
	d := run(curl, "opaque.internal.example", 443)
	denied(d)
	d.reason == concat("", [
		"opaque.internal.example:443 needs HTTP method/path inspection (protocol: rest in policy tls-modes),",
		" which an opaque tunnel does not allow, and the endpoint has tls: passthrough; send plain HTTP through the proxy",
	])
}

test_plain_endpoint_is_passed_through if {
	d := run(git, "api.github.com", 443)
	allowed_by(d, "github")
	d.inspect == false
}

test_inspect_without_rest_decides_requests_by_host_port_binary if {
	tunnel := run(curl, "logged.example.com", 443)
	allowed_by(tunnel, "tls-modes")
	tunnel.inspect == true
	request := run_http(curl, "logged.example.com", 443, "DELETE", "/anything")
	allowed_by(request, "tls-modes")
	request.inspect == true
}

# overlap-a and overlap-b pass shared.example.com through; tls-modes has read-only rules for it.
test_endpoints_disagreeing_inspect if {
	d := run(curl, "shared.example.com", 443)
	allowed_by(d, "overlap-a")
	d.inspect == true
}

test_passthrough_endpoint_still_allows_each_inspected_request if {
	d := run_http(curl, "shared.example.com", 443, "DELETE", "/x")
	allowed_by(d, "overlap-a")
	d.inspect == true
}

test_inspected_audit_endpoint_tunnel_allowed if {
	d := run(curl, "audit.internal.example", 8080)
	allowed_by(d, "internal-api")
	d.inspect == true
}

test_denial_carries_no_inspect if {
	d := run(curl, "evil.example", 443)
	denied(d)
	not d.inspect
}

# A data document written without `tls` (by hand) never inspects: the rest tunnel stays denied.
test_endpoint_without_tls_key_is_not_inspected if {
	policy := fixture.policies["internal-api"]
	endpoint := object.remove(policy.endpoints[0], {"tls"})
	d := authz.decision with input as {"exec": {"path": curl, "ancestors": []}, "network": {"host": "api.internal.example", "port": 8080}}
		with data.portcullis.policies as {"internal-api": object.union(policy, {"endpoints": [endpoint]})}
		with data.portcullis.index as {"exact": {"api.internal.example": [["internal-api", 0]]}, "wildcard": {}, "hostless": {}}
	denied(d)
	contains(d.reason, "needs HTTP method/path inspection")
}

test_access_read_only_allows_get if allowed_by(run_http(curl, "ro.internal.example", 80, "HEAD", "/anything/deep"), "internal-api")

test_access_read_only_denies_post if denied(run_http(curl, "ro.internal.example", 80, "POST", "/x"))

test_audit_enforcement_turns_deny_into_audit if {
	d := run_http(curl, "audit.internal.example", 8080, "POST", "/ok/1")
	d.allow == true
	d.decision == "audit"
	d.policy == "internal-api"
	startswith(d.reason, "would be denied (POST /ok/1 to audit.internal.example:8080 is not permitted")
}

test_audit_enforcement_allowed_request_is_allow if allowed_by(run_http(curl, "audit.internal.example", 8080, "GET", "/ok/1"), "internal-api")

# --- deny reasons and fail-closed defaults --------------------------------------------------

test_unknown_host_denied if {
	d := run(curl, "evil.example", 443)
	denied(d)
	d.reason == "evil.example:443 is not allowed by any policy"
}

test_no_policy_loaded if {
	d := authz.decision with input as {"exec": {"path": curl, "ancestors": []}, "network": {"host": "a.example", "port": 443}}
		with data.portcullis.policies as {}
		with data.portcullis.index as {"exact": {}, "wildcard": {}, "hostless": {}}
	denied(d)
	d.reason == "no policy is loaded, so all egress is denied"
}

test_malformed_input_denied if {
	d := _eval({"exec": {"path": curl}})
	denied(d)
	contains(d.reason, "malformed")
}

test_non_numeric_port_denied if denied(_eval({"exec": {"path": git, "ancestors": []}, "network": {"host": "api.github.com", "port": "443"}}))

# --- extension rules ------------------------------------------------------------------------

test_extension_deny_overrides_allow if {
	d := authz.decision with input as {"exec": {"path": git, "ancestors": []}, "network": {"host": "api.github.com", "port": 443}}
		with data.portcullis.policies as fixture.policies
		with data.portcullis.index as fixture.index
		with data.portcullis.ext.deny as {"no git today"}
	denied(d)
	d.reason == "blocked by an extension rule: no git today"
}

test_extension_deny_object_reason if {
	d := authz.decision with input as {"exec": {"path": git, "ancestors": []}, "network": {"host": "api.github.com", "port": 443}}
		with data.portcullis.policies as fixture.policies
		with data.portcullis.index as fixture.index
		with data.portcullis.ext.deny as {{"reason": "object reason"}}
	d.reason == "blocked by an extension rule: object reason"
}

# --- wildcard forms matched without glob.match, and extension members without a reason ------

_multi_star_policies := {"p": {
	"name": "p",
	"binaries": [],
	"endpoints": [{
		"host": "a*b*.example.com", "host_kind": "wildcard", "ports": [443], "protocol": "",
		"enforcement": "enforce", "rules": [], "deny_rules": [], "allowed_ips": [],
	}],
}}

_to_multi_star(host) := d if {
	d := authz.decision with input as {"exec": {"path": curl, "ancestors": []}, "network": {"host": host, "port": 443}}
		with data.portcullis.policies as _multi_star_policies
		with data.portcullis.index as {"exact": {}, "wildcard": {"example.com": [["p", 0]]}, "hostless": {}}
}

test_host_pattern_with_two_wildcards if {
	_to_multi_star("axxbyy.example.com").allow
	_to_multi_star("ab.example.com").allow
	not _to_multi_star("axxyy.example.com").allow
	not _to_multi_star("a.b.example.com").allow
}

_with_ext(deny) := d if {
	d := authz.decision with input as {"exec": {"path": git, "ancestors": []}, "network": {"host": "api.github.com", "port": 443}}
		with data.portcullis.policies as fixture.policies
		with data.portcullis.index as fixture.index
		with data.portcullis.ext.deny as deny
}

test_extension_member_without_reason_denies if {
	_with_ext({7}).reason == "blocked by an extension rule: an extension rule denied the request without a reason"
	_with_ext({{"why": "x"}}).reason == "blocked by an extension rule: an extension rule denied the request without a reason"
	not _with_ext({{"reason": 5}}).allow
	_with_ext({{"reason": "r"}}).reason == "blocked by an extension rule: r"
	_with_ext(set()).allow
}

test_ancestors_listed_nearest_first if {
	d := run_with_ancestors("/usr/bin/wget", ["/bin/sh", "/usr/bin/python3"], "api.github.com", 443)
	contains(d.reason, "binary /usr/bin/wget (ancestors: /bin/sh <- /usr/bin/python3)")
}

# --- credentials: an allow names the credentials its endpoints bind --------------------------

test_allow_names_credentials_of_binding_endpoint if {
	d := run_http(curl, "creds.example.com", 443, "POST", "/x")
	allowed_by(d, "creds")
	d.credentials == ["github"]
	d.cleartext_credentials == []
	d.body_credentials == ["github"]
}

test_plain_http_endpoint_allows_cleartext if {
	d := run_http(curl, "creds.example.com", 80, "GET", "/x")
	allowed_by(d, "creds")
	d.credentials == ["github"]
	d.cleartext_credentials == ["github"]
	d.body_credentials == []
}

test_credentials_of_every_allowing_endpoint if {
	d := _eval({
		"exec": {"path": curl, "ancestors": [git]},
		"network": {"host": "creds.example.com", "port": 443},
		"request": {"method": "GET", "path": "/x"},
	})
	allowed_by(d, "creds")
	d.credentials == ["github", "other"]
}

test_denied_request_binds_no_credentials if {
	d := run_http(curl, "creds.example.com", 80, "POST", "/x")
	denied(d)
	not d.credentials
}

test_audit_decision_binds_no_credentials if {
	d := run_http(git, "creds.example.com", 8443, "DELETE", "/x")
	d.decision == "audit"
	not d.credentials
}

test_allow_without_bound_credentials_has_no_field if {
	d := run(git, "api.github.com", 443)
	allowed_by(d, "github")
	not d.credentials
}
