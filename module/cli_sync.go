package module

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/mirror"
)

// syncCommand is the sync verb: Redis made to match CodeMie's webhooks.
func syncCommand() *cobra.Command {
	sync := &cobra.Command{Use: "sync", Short: "Makes Redis match the webhook integrations of CodeMie's settings API",
		Long: `
Reads every webhook integration from the CodeMie API
(GET /v1/settings/project?filters={"type":"Webhook"}, every page, as an admin)
and makes Redis match: creates and updates records (secrets encrypted with the
secrets key), keeps stored values where CodeMie masks them
(secure_header_value), and deletes the records that sync wrote whose setting
is gone; records written by hand are left alone. Nothing is written unless
the whole listing was read.

The API's base URL and credentials come from flags or the environment:
CODEMIE_WEBHOOKS_CODEMIE_URL, CODEMIE_WEBHOOKS_CODEMIE_TOKEN, or the OAuth2
client credentials CODEMIE_WEBHOOKS_CODEMIE_TOKEN_URL, _CLIENT_ID and
_CLIENT_SECRET.`,
		Args: cobra.NoArgs, RunE: run((*cli).sync)}
	f := sync.Flags()
	f.String("codemie-url", "", "the CodeMie API's base URL, such as http://codemie-api:8080 (env CODEMIE_WEBHOOKS_CODEMIE_URL)")
	f.String("codemie-token", "", "bearer token of an admin (env CODEMIE_WEBHOOKS_CODEMIE_TOKEN)")
	f.String("codemie-token-url", "", "OAuth2 token URL, for client credentials (env CODEMIE_WEBHOOKS_CODEMIE_TOKEN_URL)")
	f.String("codemie-client-id", "", "OAuth2 client id (env CODEMIE_WEBHOOKS_CODEMIE_CLIENT_ID)")
	f.String("codemie-client-secret", "", "OAuth2 client secret (env CODEMIE_WEBHOOKS_CODEMIE_CLIENT_SECRET)")
	f.Bool("dry-run", false, "print the changes and write nothing")
	f.Bool("force", false, "allow deleting more than half of the integrations synced before (a listing that misses settings must not empty Redis)")
	f.Int("page-size", 100, "settings asked for per page")
	return sync
}

// sync reads CodeMie's webhook settings and makes Redis match them.
func (c *cli) sync(ctx context.Context, fl caddycmd.Flags, _ []string) error {
	src, err := codemieSource(fl)
	if err != nil {
		return err
	}
	settings, err := src.Settings(ctx)
	if err != nil {
		return fmt.Errorf("%v (nothing was written)", err)
	}
	return c.mirror(ctx, settings, fl.Bool("dry-run"), mirror.PlanOptions{MassDelete: fl.Bool("force")})
}

// codemieSource is the settings API the flags or the environment name.
func codemieSource(fl caddycmd.Flags) (*mirror.Source, error) {
	base := flagOrEnv(fl, "codemie-url", "CODEMIE_WEBHOOKS_CODEMIE_URL")
	u, ok := httpURL(base)
	if !ok {
		return nil, badInput("--codemie-url: the CodeMie API's http or https base URL is required")
	}
	token := flagOrEnv(fl, "codemie-token", "CODEMIE_WEBHOOKS_CODEMIE_TOKEN")
	tokenURL := flagOrEnv(fl, "codemie-token-url", "CODEMIE_WEBHOOKS_CODEMIE_TOKEN_URL")
	src := &mirror.Source{BaseURL: u, Client: dispatch.HTTPClient, PerPage: fl.Int("page-size")}
	switch {
	case token != "" && tokenURL != "":
		return nil, badInput("--codemie-token and --codemie-token-url are exclusive")
	case token != "":
		src.Tokens = dispatch.StaticToken(token)
	case tokenURL != "":
		src.Tokens = dispatch.NewClientCredentials(tokenURL, flagOrEnv(fl, "codemie-client-id", "CODEMIE_WEBHOOKS_CODEMIE_CLIENT_ID"),
			flagOrEnv(fl, "codemie-client-secret", "CODEMIE_WEBHOOKS_CODEMIE_CLIENT_SECRET"), dispatch.HTTPClient)
	default:
		return nil, badInput("a CodeMie admin's --codemie-token, or --codemie-token-url with a client id and secret, is required")
	}
	return src, nil
}

// importCodeMie imports an export of CodeMie's settings as sync would,
// without deleting what the export does not hold unless prune.
func (c *cli) importCodeMie(ctx context.Context, file string, prune, force bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return errBadInput{err}
	}
	settings, err := mirror.ParseExport(data)
	if err != nil {
		return errBadInput{err}
	}
	return c.mirror(ctx, settings, false, mirror.PlanOptions{KeepOthers: !prune, MassDelete: force})
}

// mirror makes Redis match settings and says what it did: the changes
// (names of fields, never values), the settings it could not serve, and
// the masked values still to set by hand.
func (c *cli) mirror(ctx context.Context, settings []mirror.Setting, dryRun bool, opts mirror.PlanOptions) error {
	records, problems := mirror.Records(settings)
	plan, err := mirror.MakePlan(ctx, c.store, c.keys, records, opts)
	switch {
	case errors.Is(err, mirror.ErrNoKey) || errors.Is(err, mirror.ErrMassDelete):
		return errBadInput{fmt.Errorf("%v (nothing was written)", err)}
	case err != nil:
		return fmt.Errorf("%v (nothing was written)", err)
	}
	for _, p := range problems {
		fmt.Fprintf(c.out, "not served as stored: %s\n", p)
	}
	verb := ""
	if dryRun {
		verb = "would "
	}
	for _, ch := range plan.Changes {
		fmt.Fprintf(c.out, "%s%s %s (%s)\n", verb, ch.Action, ch.ID, strings.Join(ch.Fields, ", "))
	}
	for _, id := range plan.Contested {
		fmt.Fprintf(c.out, "left alone: %s is listed by several settings, none of which wrote it; keep one in CodeMie\n", id)
	}
	for _, id := range plan.HandWritten {
		fmt.Fprintf(c.out, "left alone: %s was written by hand (it has no codemie_setting_id); "+
			"to serve CodeMie's setting instead, delete it (caddy codemie-webhooks delete %s) and sync again\n", id, id)
	}
	for _, id := range slices.Sorted(maps.Keys(plan.NeedsValue)) {
		for _, f := range plan.NeedsValue[id] {
			fmt.Fprintf(c.out, "%s needs its %s, which CodeMie masks; until it is set the webhook is refused (500): "+
				"caddy codemie-webhooks set %s --%s <value>\n", id, f, id, strings.ReplaceAll(f, "_", "-"))
		}
	}
	if !dryRun {
		if err := plan.Apply(ctx, c.store); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.out, "%d webhook settings read, %d changes%s\n", len(settings), len(plan.Changes), map[bool]string{true: " (dry run: nothing written)"}[dryRun])
	return nil
}
