package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	neturl "net/url"
	"strings"

	"github.com/tsfallback/tsfallback/callback"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/thingspace"
)

func runCallbacks(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(env.Stderr, "Usage: tsfallback callbacks register --account ACCOUNT --url URL [--service NAME]")
		fmt.Fprintln(env.Stderr, "       tsfallback callbacks list --account ACCOUNT")
		fmt.Fprintln(env.Stderr, "       tsfallback callbacks delete --account ACCOUNT [--service NAME]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return usageErr("callbacks needs a subcommand: register, list or delete")
	}
	switch args[0] {
	case "register", "list", "delete":
	default:
		return usageErr("unknown callbacks subcommand %q (want register, list or delete)", args[0])
	}
	sub, args := args[0], args[1:]
	fs := newFlags(env, "callbacks "+sub, "--account ACCOUNT [--url URL] [--service NAME]")
	account := fs.String("account", "", "ThingSpace account name (required)")
	url := fs.String("url", "", "public URL of the callback ingester, ending in /callbacks/thingspace (register)")
	service := fs.String("service", thingspace.ServiceDeviceProfile, "callback service name")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	if err := model.ValidateAccountName(*account); err != nil {
		return usageErr("--account: %v", err)
	}
	if sub == "register" {
		if err := checkCallbackURL(env, *url); err != nil {
			return err
		}
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return err
	}
	log, err := newLogger(s.Log, env.Stderr, "warn")
	if err != nil {
		return usageErr("%v", err)
	}
	if err := s.ThingSpace.Validate(); err != nil {
		return usageErr("%v", err)
	}
	client, done, err := guardedClient(ctx, s, log)
	if err != nil {
		return usageErr("%v", err)
	}
	defer done()
	switch sub {
	case "register":
		if s.Callback.Username == "" || s.Callback.Password == "" {
			return usageErr("TSFB_CALLBACK_USERNAME and TSFB_CALLBACK_PASSWORD must be set: ThingSpace echoes them in every callback")
		}
		err = client.RegisterCallback(ctx, *account, thingspace.Registration{
			Name: *service, URL: *url,
			Username: s.Callback.Username.Reveal(), Password: s.Callback.Password.Reveal(),
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "registered %s for account %s at %s\n", *service, *account, *url)
		return nil
	case "list":
		regs, err := client.ListCallbacks(ctx, *account)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(env.Stdout)
		for _, r := range regs {
			// The password is never printed.
			if err := enc.Encode(map[string]string{"name": r.Name, "url": r.URL}); err != nil {
				return err
			}
		}
		return nil
	case "delete":
		if err := client.DeleteCallback(ctx, *account, *service); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted %s for account %s\n", *service, *account)
		return nil
	default:
		return usageErr("unknown callbacks subcommand %q (want register, list or delete)", sub)
	}
}

// checkCallbackURL refuses a URL ThingSpace could not post to.
func checkCallbackURL(env Env, raw string) error {
	if raw == "" {
		return usageErr("register needs --url")
	}
	u, err := neturl.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usageErr("--url: %q is not an absolute http(s) URL", raw)
	}
	if !strings.HasSuffix(u.Path, callback.CallbackPath) {
		// A proxy in front may map another path to the ingester, so
		// this is a warning, not a refusal.
		fmt.Fprintf(env.Stderr, "warning: --url does not end in %s, where the ingester takes callbacks; "+
			"make sure a proxy maps it there\n", callback.CallbackPath)
	}
	return nil
}
