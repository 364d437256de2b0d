# Included by the install script (cmake_install.cmake), not at configure time.
#
# referrald_install_conffile(SOURCE DIRECTORY NAME) installs SOURCE as
# $DESTDIR/DIRECTORY/NAME when there is no such file, leaves an identical one
# alone, and otherwise keeps the operator's file and writes the new default
# beside it as NAME.dist (what dpkg calls .dpkg-dist).
function(referrald_install_conffile source directory name)
  set(dir "$ENV{DESTDIR}${directory}")
  set(target "${dir}/${name}")
  file(MAKE_DIRECTORY "${dir}")
  set(mode OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  if(NOT EXISTS "${target}")
    message(STATUS "Installing: ${target}")
    file(COPY_FILE "${source}" "${target}")
    file(CHMOD "${target}" PERMISSIONS ${mode})
  else()
    file(SHA256 "${source}" new_hash)
    file(SHA256 "${target}" old_hash)
    if(new_hash STREQUAL old_hash)
      message(STATUS "Up-to-date: ${target}")
    else()
      message(STATUS "Keeping: ${target} (edited); the new default is ${target}.dist")
      file(COPY_FILE "${source}" "${target}.dist")
      file(CHMOD "${target}.dist" PERMISSIONS ${mode})
    endif()
  endif()
  # install_manifest.txt lists what was installed, so a package can track it.
  set(CMAKE_INSTALL_MANIFEST_FILES ${CMAKE_INSTALL_MANIFEST_FILES} "${target}" PARENT_SCOPE)
endfunction()
