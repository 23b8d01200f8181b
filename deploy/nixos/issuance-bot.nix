# NixOS module for issuance-bot: the same hardened unit as
# deploy/issuance-bot.service (scripts/check-deploy keeps their [Service]
# settings in step), with the package from this repository's flake.
#
#   imports = [ issuance-bot.nixosModules.default ];
#   services.issuance-bot.enable = true;
#
# Configuration and secrets stay outside the Nix store (it is world
# readable): /etc/issuance-bot/config.toml, secrets.env and the keystore,
# laid out as deploy/README.md says. One instance per database and per
# issuer wallet, ever. A secret may instead be a systemd credential named
# by its key's _FILE variable (deploy/README.md), e.g.
#   systemd.services.issuance-bot.serviceConfig.LoadCredential =
#     [ "alpaca-api-key:/run/keys/alpaca-api-key" ];
#   systemd.services.issuance-bot.environment.ISSUANCE_AUTH__ALPACA__API_KEY_FILE =
#     "%d/alpaca-api-key";
{ config, lib, pkgs, ... }:

let
  cfg = config.services.issuance-bot;
  bin = "${cfg.package}/bin/issuance-bot";
in
{
  options.services.issuance-bot = {
    enable = lib.mkEnableOption "issuance-bot, the Alpaca ITN issuer service";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The issuance-bot package (the flake's module sets it).";
    };

    configFile = lib.mkOption {
      type = lib.types.str;
      default = "/etc/issuance-bot/config.toml";
      description = "TOML configuration without secrets (a path outside the store).";
    };

    environmentFile = lib.mkOption {
      type = lib.types.str;
      default = "/etc/issuance-bot/secrets.env";
      description = "ISSUANCE_* secrets, root-owned, mode 0600; read by systemd as root.";
    };

    logFilter = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "info,chain=debug,rocket=off";
      description = "RUST_LOG; null keeps the service's default. An invalid value stops startup.";
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.issuance-bot = {
      isSystemUser = true;
      group = "issuance-bot";
      home = "/var/lib/issuance-bot";
    };
    users.groups.issuance-bot = { };

    systemd.services.issuance-bot = {
      description = "issuance-bot (Alpaca ITN issuer)";
      documentation = [ "file://${cfg.package}/share/doc/issuance-bot/operations.md" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      # A unit that keeps failing to start is left failed (and alerted on).
      startLimitIntervalSec = 15 * 60;
      startLimitBurst = 5;
      environment = lib.optionalAttrs (cfg.logFilter != null) {
        RUST_LOG = cfg.logFilter;
      };
      serviceConfig = {
        # The binary does not speak sd_notify; it is ready when /ready says so.
        Type = "exec";
        User = "issuance-bot";
        Group = "issuance-bot";
        EnvironmentFile = cfg.environmentFile;
        # An invalid file or environment fails the start (exit 2) before
        # serve runs; its printout of a valid configuration is dropped.
        ExecStartPre = "${pkgs.bash}/bin/sh -c 'exec ${bin} validate-config --config ${cfg.configFile} >/dev/null'";
        ExecStart = "${bin} serve --config ${cfg.configFile}";

        StateDirectory = "issuance-bot";
        StateDirectoryMode = "0700";
        WorkingDirectory = "/var/lib/issuance-bot";
        UMask = "0077";

        # Nothing has to expire before a restart: the kernel frees the
        # single-writer lock (flock) when the process dies.
        Restart = "on-failure";
        RestartSec = "2s";

        # SIGTERM drains the drivers; the lease row and the lock go last.
        KillSignal = "SIGTERM";
        TimeoutStopSec = "240s";

        LimitNOFILE = 8192;

        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [ "/var/lib/issuance-bot" ];
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged" ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
