# `cmake --install`: the service as Debian 12 runs it under systemd.
#
#   /usr/sbin/referrald, /usr/bin/referralctl     (daemon/, cli/: the completion too)
#   /etc/referrald/{referrald.toml,rules.toml}    an operator's edited file is never overwritten
#   /usr/share/referrald/{schemas,web}            what [paths] names in the production configuration
#   /usr/lib/systemd/system/referrald.service     the hardened unit (REFERRALD_SYSTEMD_UNIT_DIR)
#   /usr/lib/sysusers.d/referrald.conf            its user
#   /usr/lib/tmpfiles.d/referrald.conf            its state directory, /var/lib/referrald (0700)
#   /usr/share/man/man{5,8}/                      the man pages (man/)
#   /usr/share/doc/referrald/                     README, the commented example files, the operators' docs
#
# The unit and the production configuration name /usr and /etc: install with
# the prefix /usr (the default here). DESTDIR stages the tree for a package.

# The binaries install themselves (daemon/ and cli/, with referralctl's bash
# completion); the rest of the layout is here.

install(DIRECTORY ${PROJECT_SOURCE_DIR}/schemas/ DESTINATION ${CMAKE_INSTALL_DATADIR}/referrald/schemas
        FILES_MATCHING PATTERN "*.json")
install(DIRECTORY ${PROJECT_SOURCE_DIR}/web/ DESTINATION ${CMAKE_INSTALL_DATADIR}/referrald/web
        PATTERN "README.md" EXCLUDE)

# Not CMAKE_INSTALL_LIBDIR: systemd looks in lib/, never in lib/<multiarch>/.
# The Debian package (debian/rules) puts the unit in /lib/systemd/system, where
# bookworm's debhelper looks for it.
set(REFERRALD_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
    "Where the systemd unit is installed (relative: under the prefix)")
install(FILES ${PROJECT_SOURCE_DIR}/systemd/referrald.service DESTINATION ${REFERRALD_SYSTEMD_UNIT_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/systemd/referrald.sysusers DESTINATION lib/sysusers.d RENAME referrald.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/referrald.tmpfiles DESTINATION lib/tmpfiles.d RENAME referrald.conf)

install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/config/referrald.example.toml
              ${PROJECT_SOURCE_DIR}/config/rules.example.toml ${PROJECT_SOURCE_DIR}/docs/encryption.md
              ${PROJECT_SOURCE_DIR}/docs/referralctl.md ${PROJECT_SOURCE_DIR}/docs/packaging.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Configuration files (Debian's conffiles, by hand): copied only where none
# exists; an edited one is kept and the new default goes beside it as .dist.
install(CODE "
  include(\"${CMAKE_CURRENT_LIST_DIR}/InstallConffile.cmake\")
  referrald_install_conffile(\"${PROJECT_SOURCE_DIR}/config/referrald.production.toml\" /etc/referrald referrald.toml)
  referrald_install_conffile(\"${PROJECT_SOURCE_DIR}/config/rules.toml\" /etc/referrald rules.toml)
  if(NOT CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    message(WARNING \"referrald: installing under \${CMAKE_INSTALL_PREFIX}, but referrald.service and \"
                    \"/etc/referrald/referrald.toml name /usr/sbin and /usr/share/referrald; install with --prefix /usr\")
  endif()
")
