# Installation of the systemd units and the Debian package (cpack -G DEB).
#
# The units name the binaries by their installed path, which is only known
# at install time (cmake --install --prefix, or cpack's /usr), so they are
# generated then from dist/systemd/*.service.in.

set(MUSCLEFS_VERSION "0.11.0")
# systemd's StateDirectory= is always below /var/lib.
set(MUSCLEFS_STATE_DIR "/var/lib/musclefs")
set(MUSCLEFS_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "where the units go, relative to the install prefix (systemd also reads /usr/local/lib/systemd/system)")

install(CODE "
  set(CMAKE_INSTALL_FULL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/bin\")
  set(MUSCLEFS_STATE_DIR \"${MUSCLEFS_STATE_DIR}\")
  foreach(unit musclefs.service musclefs@.service)
    set(dest \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${MUSCLEFS_SYSTEMD_UNIT_DIR}/\${unit}\")
    configure_file(\"${CMAKE_SOURCE_DIR}/dist/systemd/\${unit}.in\" \"\${dest}\" @ONLY)
    message(STATUS \"Installing: \${dest}\")
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${dest}\")
  endforeach()
")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME musclefs)
set(CPACK_PACKAGE_VERSION ${MUSCLEFS_VERSION})
set(CPACK_PACKAGE_CONTACT "musclefs maintainers <musclefs@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "9P2000.L file server with a content-addressed store and TLS-PSK")
set(CPACK_PACKAGE_DESCRIPTION "musclefs serves a tree kept in a content-addressed store (SHA-256 chunks in pack files, metadata in SQLite) to Linux clients that mount it with the kernel's 9p file system: locally over a unix socket, across the network over TLS-PSK (muscle relay, muscle mount) or SSH (muscle stdio, muscle mount --ssh). Includes systemd units (musclefs.service, musclefs@.service) that run it as the system user musclefs.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies (libuv1, libmbedtls14, libmbedcrypto7, libmbedx509-1,
# libsqlite3-0, libc6, libstdc++6, libgcc-s1) with versions, from the
# binaries by dpkg-shlibdeps; adduser for the postinst, procps for the
# units' ExecReload=/bin/kill.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "openssh-client, openssh-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/dist/debian/postinst;${CMAKE_SOURCE_DIR}/dist/debian/prerm;${CMAKE_SOURCE_DIR}/dist/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
